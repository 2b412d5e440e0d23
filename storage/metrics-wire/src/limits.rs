//! Every limit the decoders enforce, in one place. They bound the memory a
//! single request can make the service allocate, so each is checked before
//! the allocation it guards wherever the format allows.

/// What one write request may carry. A request over any limit is refused
/// whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The body as received (snappy-compressed for remote write).
    pub body_bytes_max: usize,
    /// The body after decompression (remote write), read from the snappy
    /// header before anything is allocated; the text formats are checked
    /// against it as they arrive already decoded.
    pub decoded_bytes_max: usize,
    /// Series in one request (distinct label sets for the text formats).
    pub series_per_request_max: usize,
    /// Label pairs in one series, the metric name included.
    pub labels_per_series_max: usize,
    pub label_name_bytes_max: usize,
    pub label_value_bytes_max: usize,
    /// Samples in one request (remote write also counts its histograms and
    /// exemplars here, which are refused, so that refusing them is cheap).
    pub samples_per_request_max: usize,
    /// Metadata entries in one request (v1 `metadata`, text `# HELP`/`# TYPE`
    /// families). v2 metadata rides on its series and is bounded by them.
    pub metadata_per_request_max: usize,
    /// Entries of a v2 request's symbol table.
    pub symbols_per_request_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            body_bytes_max: 32 << 20,
            decoded_bytes_max: 128 << 20,
            series_per_request_max: 100_000,
            labels_per_series_max: 64,
            label_name_bytes_max: 256,
            label_value_bytes_max: 4096,
            samples_per_request_max: 1_000_000,
            metadata_per_request_max: 100_000,
            symbols_per_request_max: 1_000_000,
        }
    }
}
