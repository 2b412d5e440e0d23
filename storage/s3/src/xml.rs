//! The XML bodies of the S3 API: response writers and request parsers.
//!
//! Writers (here) take borrowed views of what the store knows and return the
//! whole body as bytes. Parsers (in `request`, re-exported here) read
//! request bodies with a streaming reader under
//! fixed limits (body size, text size, nesting, item count), accept any
//! namespace prefix and insignificant whitespace, and refuse document type
//! declarations, so no entity other than the five predefined ones and
//! character references is ever expanded.
//!
//! Element names, their order and which values `encoding-type=url` encodes
//! follow the Amazon S3 API reference for each operation. Every limit of
//! the module is a constant below.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{S3Error, S3ErrorCode};

mod request;

pub use request::{
    parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete,
    CompletedPart, CreateBucketConfiguration, DeleteRequest, ObjectToDelete, ParseXmlBodyError,
};

/// The namespace S3 puts on the root of every response except `<Error>`.
pub const S3_XML_NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// The only storage class this service offers.
pub const STORAGE_CLASS_STANDARD: &str = "STANDARD";

/// Most parts one multipart upload may have (S3's limit).
pub const MULTIPART_PARTS_MAX: usize = 10_000;

/// Most objects one DeleteObjects request may name (S3's limit).
pub const DELETE_OBJECTS_MAX: usize = 1_000;

/// Largest CompleteMultipartUpload body. 10,000 parts at roughly 100 bytes
/// each (`<Part>`, `<PartNumber>`, a quoted 32-digit `<ETag>`) come to about
/// 1 MB; twice that leaves room for checksum elements and indentation.
pub const COMPLETE_MULTIPART_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Largest DeleteObjects body: 1,000 keys of up to 1,024 bytes plus markup
/// fit in about 1.1 MB; heavily escaped keys need the rest.
pub const DELETE_OBJECTS_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Largest CreateBucketConfiguration body; the real document is a few
/// hundred bytes.
pub const CREATE_BUCKET_BODY_BYTES_MAX: usize = 64 * 1024;

/// Longest text of one element after unescaping. Object keys are at most
/// 1,024 bytes; this leaves room for the caller to answer KeyTooLongError
/// per key rather than failing the whole document.
pub const ELEMENT_TEXT_BYTES_MAX: usize = 8 * 1024;

/// Deepest element nesting a request body may use. S3's request documents
/// need four levels (CreateBucketConfiguration/Tags/Tag/Key).
pub const ELEMENT_DEPTH_MAX: usize = 16;

/// Latest time S3's four-digit years can express: 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS_MAX: u64 = 253_402_300_799;

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// What `encoding-type=url` leaves alone: RFC 3986 unreserved characters
/// and `/`, which S3 keeps literal so prefixes stay readable. A space
/// becomes `%20`, which both plain percent-decoding and form decoding (as
/// botocore uses) turn back into a space; a literal `+` becomes `%2B`.
const URL_KEY_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

// ---------------------------------------------------------------------------
// Shared writing helpers
// ---------------------------------------------------------------------------

/// Formats a time as S3 writes it in XML: ISO 8601 in UTC with
/// milliseconds, such as `2009-10-12T17:50:30.000Z`. Times before 1970 are
/// written as the epoch and times after year 9999 as its last millisecond.
pub fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let (seconds, milliseconds) = if since_epoch.as_secs() > TIMESTAMP_SECONDS_MAX {
        (TIMESTAMP_SECONDS_MAX, 999)
    } else {
        (since_epoch.as_secs(), since_epoch.subsec_millis())
    };
    // `seconds` is clamped to year 9999 above, so it fits an i64.
    let (year, month, day) = crate::sigv4::time::civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milliseconds:03}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60,
    )
}

/// Appends `text` to `out` escaped for XML character data.
///
/// Beyond the five predefined entities, a carriage return is written as
/// `&#13;` because parsers turn a literal one into a line feed, and other
/// control characters as character references so that no byte of a key is
/// lost. Those references are not legal XML 1.0, as with S3; clients that
/// must read such keys ask for `encoding-type=url` (botocore always does
/// for listings).
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    let mut unwritten_from = 0;
    for (index, character) in text.char_indices() {
        let replacement: Cow<'static, str> = match character {
            '&' => Cow::Borrowed("&amp;"),
            '<' => Cow::Borrowed("&lt;"),
            '>' => Cow::Borrowed("&gt;"),
            '"' => Cow::Borrowed("&quot;"),
            '\'' => Cow::Borrowed("&apos;"),
            '\t' | '\n' => continue,
            '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => {
                Cow::Owned(format!("&#{};", u32::from(character)))
            }
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[unwritten_from..index]);
        out.extend_from_slice(replacement.as_bytes());
        unwritten_from = index + character.len_utf8();
    }
    out.extend_from_slice(&text.as_bytes()[unwritten_from..]);
}

/// Whether listing responses URL-encode key names (`encoding-type=url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyEncoding {
    /// Keys are written as they are, XML-escaped.
    #[default]
    None,
    /// Keys, prefixes, delimiters and markers are percent-encoded, and the
    /// response says `<EncodingType>url</EncodingType>`.
    Url,
}

impl KeyEncoding {
    /// Reads the `encoding-type` query parameter; S3 knows only `url`.
    pub fn from_query(value: Option<&str>) -> Result<Self, S3Error> {
        match value {
            None => Ok(Self::None),
            Some("url") => Ok(Self::Url),
            Some(other) => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Invalid Encoding Method specified in Request",
            )
            .with_extra("ArgumentName", "encoding-type")
            .with_extra("ArgumentValue", other)),
        }
    }

    /// Encodes one key, prefix, delimiter or marker for the response.
    pub fn encode<'text>(self, value: &'text str) -> Cow<'text, str> {
        match self {
            Self::None => Cow::Borrowed(value),
            Self::Url => Cow::from(utf8_percent_encode(value, URL_KEY_ENCODE_SET)),
        }
    }
}

/// Builds one XML document into a byte vector. Element names are constants
/// of this crate; only text goes through escaping.
pub(crate) struct XmlWriter {
    out: Vec<u8>,
}

impl XmlWriter {
    pub(crate) fn new() -> Self {
        Self::with_capacity(256)
    }

    fn with_capacity(capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity.saturating_add(XML_DECLARATION.len()));
        out.extend_from_slice(XML_DECLARATION.as_bytes());
        Self { out }
    }

    pub(crate) fn open(&mut self, name: &str) {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
    }

    fn open_root(&mut self, name: &str) {
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b" xmlns=\"");
        self.out.extend_from_slice(S3_XML_NAMESPACE.as_bytes());
        self.out.extend_from_slice(b"\">");
    }

    pub(crate) fn close(&mut self, name: &str) {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
    }

    pub(crate) fn element(&mut self, name: &str, text: &str) {
        self.open(name);
        escape_into(&mut self.out, text);
        self.close(name);
    }

    fn optional_element(&mut self, name: &str, text: Option<&str>) {
        if let Some(text) = text {
            self.element(name, text);
        }
    }

    fn key_element(&mut self, name: &str, key: &str, encoding: KeyEncoding) {
        self.element(name, &encoding.encode(key));
    }

    fn number_element(&mut self, name: &str, value: u64) {
        self.element(name, &value.to_string());
    }

    fn boolean_element(&mut self, name: &str, value: bool) {
        self.element(name, if value { "true" } else { "false" });
    }

    fn timestamp_element(&mut self, name: &str, time: SystemTime) {
        self.element(name, &format_timestamp(time));
    }

    /// ETags travel quoted in XML; the store may keep them either way.
    fn etag_element(&mut self, etag: &str) {
        if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
            self.element("ETag", etag);
        } else {
            self.element("ETag", &format!("\"{etag}\""));
        }
    }

    fn owner_element(&mut self, name: &str, owner: Owner<'_>) {
        self.open(name);
        self.element("ID", owner.id);
        self.optional_element("DisplayName", owner.display_name);
        self.close(name);
    }

    fn encoding_type_element(&mut self, encoding: KeyEncoding) {
        if encoding == KeyEncoding::Url {
            self.element("EncodingType", "url");
        }
    }

    /// S3 leaves `<Delimiter>` out when the request had none or an empty one.
    fn delimiter_element(&mut self, delimiter: Option<&str>, encoding: KeyEncoding) {
        if let Some(delimiter) = delimiter.filter(|delimiter| !delimiter.is_empty()) {
            self.key_element("Delimiter", delimiter, encoding);
        }
    }

    fn common_prefixes(&mut self, prefixes: &[&str], encoding: KeyEncoding) {
        for prefix in prefixes {
            self.open("CommonPrefixes");
            self.key_element("Prefix", prefix, encoding);
            self.close("CommonPrefixes");
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

// ---------------------------------------------------------------------------
// Response writers
// ---------------------------------------------------------------------------

/// An owner or initiator: the canonical user ID and an optional name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner<'a> {
    pub id: &'a str,
    pub display_name: Option<&'a str>,
}

/// One bucket of a ListBuckets answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketEntry<'a> {
    pub name: &'a str,
    pub creation_date: SystemTime,
    pub region: &'a str,
}

/// ListBuckets: `ListAllMyBucketsResult`. `continuation_token` is where the
/// next page starts (when truncated), `prefix` the one asked for.
pub fn list_all_my_buckets_result(
    owner: Owner<'_>,
    buckets: &[BucketEntry<'_>],
    continuation_token: Option<&str>,
    prefix: Option<&str>,
) -> Vec<u8> {
    let mut writer = XmlWriter::with_capacity(256 + buckets.len() * 96);
    writer.open_root("ListAllMyBucketsResult");
    writer.owner_element("Owner", owner);
    writer.open("Buckets");
    for bucket in buckets {
        writer.open("Bucket");
        writer.element("Name", bucket.name);
        writer.timestamp_element("CreationDate", bucket.creation_date);
        writer.element("BucketRegion", bucket.region);
        writer.close("Bucket");
    }
    writer.close("Buckets");
    if let Some(token) = continuation_token {
        writer.element("ContinuationToken", token);
    }
    if let Some(prefix) = prefix {
        writer.element("Prefix", prefix);
    }
    writer.close("ListAllMyBucketsResult");
    writer.finish()
}

/// An additional checksum in a result document: `Checksum<name>` and
/// `ChecksumType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumElement<'a> {
    /// The algorithm as S3 names it: `CRC32`, `SHA256`, ...
    pub algorithm: &'a str,
    pub value: &'a str,
    /// `FULL_OBJECT` or `COMPOSITE`.
    pub kind: &'a str,
}

impl XmlWriter {
    fn checksum_elements(&mut self, checksum: Option<ChecksumElement<'_>>) {
        if let Some(c) = checksum {
            self.element(&format!("Checksum{}", c.algorithm), c.value);
            self.element("ChecksumType", c.kind);
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectEntry<'a> {
    pub key: &'a str,
    pub last_modified: SystemTime,
    /// With or without the surrounding quotes; it is written quoted.
    pub etag: &'a str,
    pub size: u64,
}

impl XmlWriter {
    /// The elements shared by `<Contents>` and `<Version>`, in S3's order.
    fn object_fields(&mut self, object: &ObjectEntry<'_>, owner: Option<Owner<'_>>) {
        self.timestamp_element("LastModified", object.last_modified);
        self.etag_element(object.etag);
        self.number_element("Size", object.size);
        if let Some(owner) = owner {
            self.owner_element("Owner", owner);
        }
        self.element("StorageClass", STORAGE_CLASS_STANDARD);
    }

    fn contents(
        &mut self,
        objects: &[ObjectEntry<'_>],
        owner: Option<Owner<'_>>,
        encoding: KeyEncoding,
    ) {
        for object in objects {
            self.open("Contents");
            self.key_element("Key", object.key, encoding);
            self.object_fields(object, owner);
            self.close("Contents");
        }
    }
}

fn listing_capacity(objects: usize, prefixes: usize) -> usize {
    512usize
        .saturating_add(objects.saturating_mul(256))
        .saturating_add(prefixes.saturating_mul(64))
}

/// ListObjectsV2: `ListBucketResult` with continuation tokens.
#[derive(Debug, Clone, Copy)]
pub struct ListObjectsV2Result<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// Left out when `None` or empty.
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub is_truncated: bool,
    /// Echoed as given; tokens are opaque and never URL-encoded.
    pub continuation_token: Option<&'a str>,
    pub next_continuation_token: Option<&'a str>,
    pub start_after: Option<&'a str>,
    pub encoding: KeyEncoding,
    /// Written into every `<Contents>` when the request had `fetch-owner=true`.
    pub owner: Option<Owner<'a>>,
    pub objects: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

impl ListObjectsV2Result<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let encoding = self.encoding;
        let mut writer = XmlWriter::with_capacity(listing_capacity(
            self.objects.len(),
            self.common_prefixes.len(),
        ));
        writer.open_root("ListBucketResult");
        writer.element("Name", self.bucket);
        writer.key_element("Prefix", self.prefix, encoding);
        writer.optional_element("ContinuationToken", self.continuation_token);
        writer.optional_element("NextContinuationToken", self.next_continuation_token);
        let key_count = self
            .objects
            .len()
            .saturating_add(self.common_prefixes.len());
        writer.number_element("KeyCount", key_count as u64);
        writer.number_element("MaxKeys", u64::from(self.max_keys));
        writer.delimiter_element(self.delimiter, encoding);
        writer.boolean_element("IsTruncated", self.is_truncated);
        if let Some(start_after) = self.start_after {
            writer.key_element("StartAfter", start_after, encoding);
        }
        writer.encoding_type_element(encoding);
        writer.contents(self.objects, self.owner, encoding);
        writer.common_prefixes(self.common_prefixes, encoding);
        writer.close("ListBucketResult");
        writer.finish()
    }
}

/// ListObjects (version 1): `ListBucketResult` with markers.
#[derive(Debug, Clone, Copy)]
pub struct ListObjectsV1Result<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    /// Always written, empty when the request had none.
    pub marker: &'a str,
    /// S3 sends it only when the listing is truncated and has a delimiter.
    pub next_marker: Option<&'a str>,
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub encoding: KeyEncoding,
    /// S3 writes the owner into every `<Contents>` of a version 1 listing.
    pub owner: Option<Owner<'a>>,
    pub objects: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

impl ListObjectsV1Result<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let encoding = self.encoding;
        let mut writer = XmlWriter::with_capacity(listing_capacity(
            self.objects.len(),
            self.common_prefixes.len(),
        ));
        writer.open_root("ListBucketResult");
        writer.element("Name", self.bucket);
        // S3 leaves v1's Prefix as it is under encoding-type=url, and
        // clients (botocore) do not decode it.
        writer.element("Prefix", self.prefix);
        writer.key_element("Marker", self.marker, encoding);
        if let Some(next_marker) = self.next_marker {
            writer.key_element("NextMarker", next_marker, encoding);
        }
        writer.number_element("MaxKeys", u64::from(self.max_keys));
        writer.delimiter_element(self.delimiter, encoding);
        writer.boolean_element("IsTruncated", self.is_truncated);
        writer.encoding_type_element(encoding);
        writer.contents(self.objects, self.owner, encoding);
        writer.common_prefixes(self.common_prefixes, encoding);
        writer.close("ListBucketResult");
        writer.finish()
    }
}

/// ListObjectVersions for a store without versioning: every object is its
/// single version, `VersionId` `null`, latest, and there are no delete
/// markers.
#[derive(Debug, Clone, Copy)]
pub struct ListObjectVersionsResult<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub key_marker: &'a str,
    pub version_id_marker: &'a str,
    pub next_key_marker: Option<&'a str>,
    pub next_version_id_marker: Option<&'a str>,
    pub delimiter: Option<&'a str>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub encoding: KeyEncoding,
    pub owner: Option<Owner<'a>>,
    pub objects: &'a [ObjectEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

/// The version ID S3 gives objects written while versioning was never on.
pub const NULL_VERSION_ID: &str = "null";

impl ListObjectVersionsResult<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let encoding = self.encoding;
        let mut writer = XmlWriter::with_capacity(listing_capacity(
            self.objects.len(),
            self.common_prefixes.len(),
        ));
        writer.open_root("ListVersionsResult");
        writer.element("Name", self.bucket);
        writer.key_element("Prefix", self.prefix, encoding);
        writer.key_element("KeyMarker", self.key_marker, encoding);
        writer.element("VersionIdMarker", self.version_id_marker);
        if let Some(next_key_marker) = self.next_key_marker {
            writer.key_element("NextKeyMarker", next_key_marker, encoding);
        }
        writer.optional_element("NextVersionIdMarker", self.next_version_id_marker);
        writer.number_element("MaxKeys", u64::from(self.max_keys));
        writer.delimiter_element(self.delimiter, encoding);
        writer.boolean_element("IsTruncated", self.is_truncated);
        writer.encoding_type_element(encoding);
        for object in self.objects {
            writer.open("Version");
            writer.key_element("Key", object.key, encoding);
            writer.element("VersionId", NULL_VERSION_ID);
            writer.boolean_element("IsLatest", true);
            writer.object_fields(object, self.owner);
            writer.close("Version");
        }
        writer.common_prefixes(self.common_prefixes, encoding);
        writer.close("ListVersionsResult");
        writer.finish()
    }
}

/// CreateMultipartUpload: `InitiateMultipartUploadResult`.
pub fn initiate_multipart_upload_result(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut writer = XmlWriter::new();
    writer.open_root("InitiateMultipartUploadResult");
    writer.element("Bucket", bucket);
    writer.element("Key", key);
    writer.element("UploadId", upload_id);
    writer.close("InitiateMultipartUploadResult");
    writer.finish()
}

/// CompleteMultipartUpload: `CompleteMultipartUploadResult`. `location` is
/// the object's URL as the caller builds it.
pub fn complete_multipart_upload_result(
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
    checksum: Option<ChecksumElement<'_>>,
) -> Vec<u8> {
    let mut writer = XmlWriter::new();
    writer.open_root("CompleteMultipartUploadResult");
    writer.element("Location", location);
    writer.element("Bucket", bucket);
    writer.element("Key", key);
    writer.etag_element(etag);
    writer.checksum_elements(checksum);
    writer.close("CompleteMultipartUploadResult");
    writer.finish()
}

fn copy_result(
    root: &str,
    last_modified: SystemTime,
    etag: &str,
    checksum: Option<ChecksumElement<'_>>,
) -> Vec<u8> {
    let mut writer = XmlWriter::new();
    writer.open_root(root);
    writer.timestamp_element("LastModified", last_modified);
    writer.etag_element(etag);
    writer.checksum_elements(checksum);
    writer.close(root);
    writer.finish()
}

/// CopyObject: `CopyObjectResult`.
pub fn copy_object_result(
    last_modified: SystemTime,
    etag: &str,
    checksum: Option<ChecksumElement<'_>>,
) -> Vec<u8> {
    copy_result("CopyObjectResult", last_modified, etag, checksum)
}

/// UploadPartCopy: `CopyPartResult`.
pub fn copy_part_result(
    last_modified: SystemTime,
    etag: &str,
    checksum: Option<ChecksumElement<'_>>,
) -> Vec<u8> {
    copy_result("CopyPartResult", last_modified, etag, checksum)
}

/// One uploaded part of a ListParts answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartEntry<'a> {
    pub part_number: u16,
    pub last_modified: SystemTime,
    pub etag: &'a str,
    pub size: u64,
    /// The part's own checksum (`Checksum<ALGORITHM>`; its kind is not
    /// written per part).
    pub checksum: Option<ChecksumElement<'a>>,
}

/// ListParts: `ListPartsResult`. The owner is also written as initiator.
#[derive(Debug, Clone, Copy)]
pub struct ListPartsResult<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    pub part_number_marker: u16,
    pub next_part_number_marker: u16,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub owner: Owner<'a>,
    pub parts: &'a [PartEntry<'a>],
    /// The upload's `ChecksumAlgorithm` and `ChecksumType`, when it has one.
    pub checksum: Option<(&'a str, &'a str)>,
}

impl ListPartsResult<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let mut writer = XmlWriter::with_capacity(listing_capacity(self.parts.len(), 0));
        writer.open_root("ListPartsResult");
        writer.element("Bucket", self.bucket);
        writer.element("Key", self.key);
        writer.element("UploadId", self.upload_id);
        writer.owner_element("Initiator", self.owner);
        writer.owner_element("Owner", self.owner);
        writer.element("StorageClass", STORAGE_CLASS_STANDARD);
        writer.number_element("PartNumberMarker", u64::from(self.part_number_marker));
        writer.number_element(
            "NextPartNumberMarker",
            u64::from(self.next_part_number_marker),
        );
        writer.number_element("MaxParts", u64::from(self.max_parts));
        writer.boolean_element("IsTruncated", self.is_truncated);
        if let Some((algorithm, kind)) = self.checksum {
            writer.element("ChecksumAlgorithm", algorithm);
            writer.element("ChecksumType", kind);
        }
        for part in self.parts {
            writer.open("Part");
            writer.number_element("PartNumber", u64::from(part.part_number));
            writer.timestamp_element("LastModified", part.last_modified);
            writer.etag_element(part.etag);
            writer.number_element("Size", part.size);
            if let Some(c) = part.checksum {
                writer.element(&format!("Checksum{}", c.algorithm), c.value);
            }
            writer.close("Part");
        }
        writer.close("ListPartsResult");
        writer.finish()
    }
}

/// One multipart upload in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadEntry<'a> {
    pub key: &'a str,
    pub upload_id: &'a str,
    pub initiated: SystemTime,
    /// Also written as initiator.
    pub owner: Owner<'a>,
}

/// ListMultipartUploads: `ListMultipartUploadsResult`.
#[derive(Debug, Clone, Copy)]
pub struct ListMultipartUploadsResult<'a> {
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub delimiter: Option<&'a str>,
    pub key_marker: &'a str,
    pub upload_id_marker: &'a str,
    /// Always written, empty when there is nothing after this page.
    pub next_key_marker: &'a str,
    pub next_upload_id_marker: &'a str,
    pub max_uploads: u32,
    pub is_truncated: bool,
    pub encoding: KeyEncoding,
    pub uploads: &'a [UploadEntry<'a>],
    pub common_prefixes: &'a [&'a str],
}

impl ListMultipartUploadsResult<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let encoding = self.encoding;
        let mut writer = XmlWriter::with_capacity(listing_capacity(
            self.uploads.len(),
            self.common_prefixes.len(),
        ));
        writer.open_root("ListMultipartUploadsResult");
        writer.element("Bucket", self.bucket);
        writer.key_element("KeyMarker", self.key_marker, encoding);
        writer.element("UploadIdMarker", self.upload_id_marker);
        writer.key_element("NextKeyMarker", self.next_key_marker, encoding);
        writer.element("NextUploadIdMarker", self.next_upload_id_marker);
        writer.delimiter_element(self.delimiter, encoding);
        writer.key_element("Prefix", self.prefix, encoding);
        writer.number_element("MaxUploads", u64::from(self.max_uploads));
        writer.boolean_element("IsTruncated", self.is_truncated);
        writer.encoding_type_element(encoding);
        for upload in self.uploads {
            writer.open("Upload");
            writer.key_element("Key", upload.key, encoding);
            writer.element("UploadId", upload.upload_id);
            writer.owner_element("Initiator", upload.owner);
            writer.owner_element("Owner", upload.owner);
            writer.element("StorageClass", STORAGE_CLASS_STANDARD);
            writer.timestamp_element("Initiated", upload.initiated);
            writer.close("Upload");
        }
        writer.common_prefixes(self.common_prefixes, encoding);
        writer.close("ListMultipartUploadsResult");
        writer.finish()
    }
}

/// An object DeleteObjects removed (or found already absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedObject<'a> {
    pub key: &'a str,
    /// Echoed when the request named one.
    pub version_id: Option<&'a str>,
}

/// An object DeleteObjects could not remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteObjectError<'a> {
    pub key: &'a str,
    pub version_id: Option<&'a str>,
    pub code: S3ErrorCode,
    /// The code's default message when `None`.
    pub message: Option<&'a str>,
}

/// DeleteObjects: `DeleteResult`. Quiet mode reports errors only.
#[derive(Debug, Clone, Copy)]
pub struct DeleteResult<'a> {
    pub quiet: bool,
    pub deleted: &'a [DeletedObject<'a>],
    pub errors: &'a [DeleteObjectError<'a>],
}

impl DeleteResult<'_> {
    pub fn to_xml(&self) -> Vec<u8> {
        let deleted_written = if self.quiet { 0 } else { self.deleted.len() };
        let mut writer =
            XmlWriter::with_capacity(listing_capacity(deleted_written, self.errors.len()));
        writer.open_root("DeleteResult");
        if !self.quiet {
            for deleted in self.deleted {
                writer.open("Deleted");
                writer.element("Key", deleted.key);
                writer.optional_element("VersionId", deleted.version_id);
                writer.close("Deleted");
            }
        }
        for error in self.errors {
            writer.open("Error");
            writer.element("Key", error.key);
            writer.optional_element("VersionId", error.version_id);
            writer.element("Code", error.code.as_str());
            writer.element(
                "Message",
                error.message.unwrap_or(error.code.default_message()),
            );
            writer.close("Error");
        }
        writer.close("DeleteResult");
        writer.finish()
    }
}

/// GetBucketLocation: `LocationConstraint`. S3 answers an empty element
/// for us-east-1; this service names its region, whatever it is.
pub fn location_constraint(region: &str) -> Vec<u8> {
    let mut writer = XmlWriter::new();
    writer.open_root("LocationConstraint");
    escape_into(&mut writer.out, region);
    writer.close("LocationConstraint");
    writer.finish()
}

/// A bucket's versioning state once it has been set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersioningStatus {
    Enabled,
    Suspended,
}

/// GetBucketVersioning: `VersioningConfiguration`. `None` (never enabled)
/// is an empty element, as S3 answers.
pub fn versioning_configuration(status: Option<VersioningStatus>) -> Vec<u8> {
    let mut writer = XmlWriter::new();
    writer.open_root("VersioningConfiguration");
    match status {
        Some(VersioningStatus::Enabled) => writer.element("Status", "Enabled"),
        Some(VersioningStatus::Suspended) => writer.element("Status", "Suspended"),
        None => {}
    }
    writer.close("VersioningConfiguration");
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::events::Event;
    use quick_xml::Reader;

    /// Reads a written body back with quick-xml into (path, text) pairs for
    /// every leaf element, checking well-formedness on the way.
    fn leaves(body: &[u8]) -> Vec<(String, String)> {
        let mut reader = Reader::from_reader(body);
        reader.config_mut().expand_empty_elements = true;
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut found = Vec::new();
        let mut had_child = Vec::new();
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Start(start) => {
                    if let Some(parent) = had_child.last_mut() {
                        *parent = true;
                    }
                    had_child.push(false);
                    path.push(String::from_utf8(start.local_name().into_inner().to_vec()).unwrap());
                    text.clear();
                }
                Event::End(_) => {
                    if had_child.pop() == Some(false) {
                        found.push((path.join("/"), std::mem::take(&mut text)));
                    }
                    path.pop();
                }
                Event::Text(raw) => text.push_str(&raw.unescape().unwrap()),
                Event::Eof => return found,
                _ => {}
            }
        }
    }

    fn values<'a>(leaves: &'a [(String, String)], path: &str) -> Vec<&'a str> {
        leaves
            .iter()
            .filter(|(leaf_path, _)| leaf_path == path)
            .map(|(_, text)| text.as_str())
            .collect()
    }

    fn value<'a>(leaves: &'a [(String, String)], path: &str) -> &'a str {
        let found = values(leaves, path);
        assert_eq!(found.len(), 1, "{path} in {leaves:?}");
        found[0]
    }

    fn at(seconds: u64, milliseconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(seconds * 1_000 + milliseconds)
    }

    const OWNER: Owner<'static> = Owner {
        id: "owner-id",
        display_name: Some("owner"),
    };

    const TRICKY_KEY: &str = "a&b<c>\"d\"'e' f+g%h/é\r\t\n";

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(at(1_255_369_830, 7)),
            "2009-10-12T17:50:30.007Z"
        );
        assert_eq!(
            format_timestamp(at(951_782_400, 0)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(at(4_107_542_400, 999)),
            "2100-03-01T00:00:00.999Z"
        );
        let before_epoch = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(format_timestamp(before_epoch), "1970-01-01T00:00:00.000Z");
        let far_future = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(format_timestamp(far_future), "9999-12-31T23:59:59.999Z");
    }

    proptest! {
        /// Cross-checks the calendar arithmetic against httpdate's.
        #[test]
        fn timestamps_agree_with_httpdate(seconds in 0u64..=TIMESTAMP_SECONDS_MAX) {
            let time = UNIX_EPOCH + Duration::from_secs(seconds);
            let ours = format_timestamp(time);
            let theirs = httpdate::fmt_http_date(time); // "Sun, 06 Nov 1994 08:49:37 GMT"
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let parts: Vec<&str> = theirs.split(' ').collect();
            let month = months.iter().position(|name| *name == parts[2]).unwrap() + 1;
            let expected = format!("{}-{:02}-{}T{}.000Z", parts[3], month, parts[1], parts[4]);
            prop_assert_eq!(ours, expected);
        }

        #[test]
        fn escaping_round_trips_through_quick_xml(text in "[^\u{0}]{0,64}") {
            let mut out = Vec::new();
            escape_into(&mut out, &text);
            let escaped = String::from_utf8(out).unwrap();
            prop_assert!(!escaped.contains(['<', '>', '"', '\'', '\r']));
            let unescaped = quick_xml::escape::unescape(&escaped).unwrap();
            prop_assert_eq!(unescaped, text);
        }

        #[test]
        fn url_encoding_round_trips(text in "\\PC{0,64}") {
            let encoded = KeyEncoding::Url.encode(&text);
            prop_assert!(encoded.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'+'));
            let decoded = percent_encoding::percent_decode_str(&encoded).decode_utf8().unwrap();
            prop_assert_eq!(decoded.as_ref(), text.as_str());
        }
    }

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        let mut out = Vec::new();
        escape_into(&mut out, "a&b<c>d\"e'f\rg\th\ni\u{1}j\u{FFFF}é");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;g\th\ni&#1;j&#65535;é"
        );
    }

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved() {
        assert_eq!(
            KeyEncoding::Url.encode("dir one/a+b%c~d_e.f-g&é"),
            "dir%20one/a%2Bb%25c~d_e.f-g%26%C3%A9"
        );
        assert_eq!(KeyEncoding::None.encode("a b"), "a b");
    }

    #[test]
    fn encoding_type_query_accepts_only_url() {
        assert_eq!(KeyEncoding::from_query(None), Ok(KeyEncoding::None));
        assert_eq!(KeyEncoding::from_query(Some("url")), Ok(KeyEncoding::Url));
        let error = KeyEncoding::from_query(Some("base64")).unwrap_err();
        assert_eq!(error.code, S3ErrorCode::InvalidArgument);
        assert!(error
            .extra
            .contains(&("ArgumentValue", "base64".to_owned())));
    }

    #[test]
    fn list_buckets_is_exactly_s3_shaped() {
        let buckets = [
            BucketEntry {
                name: "alpha",
                creation_date: at(1_255_369_830, 0),
                region: "us-east-1",
            },
            BucketEntry {
                name: "beta",
                creation_date: at(0, 5),
                region: "us-east-1",
            },
        ];
        let body =
            String::from_utf8(list_all_my_buckets_result(OWNER, &buckets, None, None)).unwrap();
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Owner><ID>owner-id</ID><DisplayName>owner</DisplayName></Owner><Buckets>\
             <Bucket><Name>alpha</Name><CreationDate>2009-10-12T17:50:30.000Z</CreationDate><BucketRegion>us-east-1</BucketRegion></Bucket>\
             <Bucket><Name>beta</Name><CreationDate>1970-01-01T00:00:00.005Z</CreationDate><BucketRegion>us-east-1</BucketRegion></Bucket>\
             </Buckets></ListAllMyBucketsResult>"
        );
        let empty = list_all_my_buckets_result(
            Owner {
                id: "x",
                display_name: None,
            },
            &[],
            None,
            None,
        );
        let leaves = leaves(&empty);
        assert_eq!(value(&leaves, "ListAllMyBucketsResult/Owner/ID"), "x");
        assert!(values(&leaves, "ListAllMyBucketsResult/Owner/DisplayName").is_empty());
    }

    fn sample_objects() -> [ObjectEntry<'static>; 2] {
        [
            ObjectEntry {
                key: TRICKY_KEY,
                last_modified: at(1_700_000_000, 123),
                etag: "d41d8cd98f00b204e9800998ecf8427e",
                size: 0,
            },
            ObjectEntry {
                key: "plain",
                last_modified: at(1_700_000_001, 0),
                etag: "\"0123456789abcdef0123456789abcdef-3\"",
                size: 15_728_640,
            },
        ]
    }

    fn sample_v2(encoding: KeyEncoding, objects: &[ObjectEntry<'static>]) -> Vec<u8> {
        ListObjectsV2Result {
            bucket: "bucket",
            prefix: "pre fix/",
            delimiter: Some("/"),
            max_keys: 2,
            is_truncated: true,
            continuation_token: Some("token+1/="),
            next_continuation_token: Some("token 2"),
            start_after: Some("after&"),
            encoding,
            owner: None,
            objects,
            common_prefixes: &["pre fix/sub dir/"],
        }
        .to_xml()
    }

    #[test]
    fn list_objects_v2_writes_every_field_escaped() {
        let objects = sample_objects();
        let body = sample_v2(KeyEncoding::None, &objects);
        let leaves = leaves(&body);
        let root = "ListBucketResult";
        assert_eq!(value(&leaves, &format!("{root}/Name")), "bucket");
        assert_eq!(value(&leaves, &format!("{root}/Prefix")), "pre fix/");
        assert_eq!(value(&leaves, &format!("{root}/KeyCount")), "3");
        assert_eq!(value(&leaves, &format!("{root}/MaxKeys")), "2");
        assert_eq!(value(&leaves, &format!("{root}/IsTruncated")), "true");
        assert_eq!(
            value(&leaves, &format!("{root}/ContinuationToken")),
            "token+1/="
        );
        assert_eq!(
            value(&leaves, &format!("{root}/NextContinuationToken")),
            "token 2"
        );
        assert_eq!(value(&leaves, &format!("{root}/StartAfter")), "after&");
        assert!(values(&leaves, &format!("{root}/EncodingType")).is_empty());
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/Key")),
            [TRICKY_KEY, "plain"]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/ETag")),
            [
                "\"d41d8cd98f00b204e9800998ecf8427e\"",
                "\"0123456789abcdef0123456789abcdef-3\""
            ]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/Size")),
            ["0", "15728640"]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/LastModified")),
            ["2023-11-14T22:13:20.123Z", "2023-11-14T22:13:21.000Z"]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/StorageClass")),
            ["STANDARD"; 2]
        );
        assert_eq!(
            value(&leaves, &format!("{root}/CommonPrefixes/Prefix")),
            "pre fix/sub dir/"
        );
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("<Key>a&amp;b&lt;c&gt;&quot;d&quot;&apos;e&apos; f+g%h/é&#13;\t\n</Key>")
        );
        assert!(text.contains("xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""));
    }

    #[test]
    fn list_objects_v2_url_encodes_keys_but_not_tokens() {
        let objects = sample_objects();
        let body = sample_v2(KeyEncoding::Url, &objects);
        let leaves = leaves(&body);
        let root = "ListBucketResult";
        assert_eq!(value(&leaves, &format!("{root}/EncodingType")), "url");
        assert_eq!(value(&leaves, &format!("{root}/Prefix")), "pre%20fix/");
        assert_eq!(value(&leaves, &format!("{root}/Delimiter")), "/");
        assert_eq!(value(&leaves, &format!("{root}/StartAfter")), "after%26");
        assert_eq!(
            value(&leaves, &format!("{root}/ContinuationToken")),
            "token+1/="
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Contents/Key"))[0],
            "a%26b%3Cc%3E%22d%22%27e%27%20f%2Bg%25h/%C3%A9%0D%09%0A"
        );
        assert_eq!(
            value(&leaves, &format!("{root}/CommonPrefixes/Prefix")),
            "pre%20fix/sub%20dir/"
        );
    }

    #[test]
    fn list_objects_v2_leaves_out_empty_options() {
        let body = ListObjectsV2Result {
            bucket: "b",
            prefix: "",
            delimiter: Some(""),
            max_keys: 1000,
            is_truncated: false,
            continuation_token: None,
            next_continuation_token: None,
            start_after: None,
            encoding: KeyEncoding::None,
            owner: Some(OWNER),
            objects: &sample_objects()[1..],
            common_prefixes: &[],
        }
        .to_xml();
        let leaves = leaves(&body);
        for absent in [
            "Delimiter",
            "ContinuationToken",
            "NextContinuationToken",
            "StartAfter",
        ] {
            assert!(
                values(&leaves, &format!("ListBucketResult/{absent}")).is_empty(),
                "{absent}"
            );
        }
        assert_eq!(value(&leaves, "ListBucketResult/Prefix"), "");
        assert_eq!(value(&leaves, "ListBucketResult/KeyCount"), "1");
        assert_eq!(
            value(&leaves, "ListBucketResult/Contents/Owner/ID"),
            "owner-id"
        );
    }

    #[test]
    fn list_objects_v1_writes_markers() {
        let objects = sample_objects();
        let body = ListObjectsV1Result {
            bucket: "bucket",
            prefix: "",
            marker: "m a",
            next_marker: Some("n&m"),
            delimiter: Some("/"),
            max_keys: 2,
            is_truncated: true,
            encoding: KeyEncoding::Url,
            owner: Some(OWNER),
            objects: &objects,
            common_prefixes: &[],
        }
        .to_xml();
        let leaves = leaves(&body);
        assert_eq!(value(&leaves, "ListBucketResult/Marker"), "m%20a");
        assert_eq!(value(&leaves, "ListBucketResult/NextMarker"), "n%26m");
        assert_eq!(value(&leaves, "ListBucketResult/EncodingType"), "url");
        assert!(values(&leaves, "ListBucketResult/KeyCount").is_empty());
        assert_eq!(
            values(&leaves, "ListBucketResult/Contents/Owner/ID"),
            ["owner-id"; 2]
        );
    }

    #[test]
    fn list_object_versions_has_null_latest_versions_only() {
        let objects = sample_objects();
        let body = ListObjectVersionsResult {
            bucket: "bucket",
            prefix: "p",
            key_marker: "",
            version_id_marker: "",
            next_key_marker: Some("plain"),
            next_version_id_marker: Some("null"),
            delimiter: None,
            max_keys: 2,
            is_truncated: true,
            encoding: KeyEncoding::None,
            owner: Some(OWNER),
            objects: &objects,
            common_prefixes: &[],
        }
        .to_xml();
        let leaves = leaves(&body);
        let root = "ListVersionsResult";
        assert_eq!(
            values(&leaves, &format!("{root}/Version/Key")),
            [TRICKY_KEY, "plain"]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Version/VersionId")),
            ["null"; 2]
        );
        assert_eq!(
            values(&leaves, &format!("{root}/Version/IsLatest")),
            ["true"; 2]
        );
        assert_eq!(value(&leaves, &format!("{root}/NextKeyMarker")), "plain");
        assert!(!String::from_utf8(body).unwrap().contains("DeleteMarker"));
    }

    #[test]
    fn multipart_and_copy_results() {
        let leaves_of = |body: Vec<u8>| leaves(&body);
        let initiated = leaves_of(initiate_multipart_upload_result("b", "k&", "u<1>"));
        assert_eq!(value(&initiated, "InitiateMultipartUploadResult/Key"), "k&");
        assert_eq!(
            value(&initiated, "InitiateMultipartUploadResult/UploadId"),
            "u<1>"
        );
        let completed = leaves_of(complete_multipart_upload_result(
            "http://h/b/k",
            "b",
            "k",
            "abc-2",
            Some(ChecksumElement {
                algorithm: "CRC32C",
                value: "AAAAAA==-2",
                kind: "COMPOSITE",
            }),
        ));
        assert_eq!(
            value(&completed, "CompleteMultipartUploadResult/ChecksumCRC32C"),
            "AAAAAA==-2"
        );
        assert_eq!(
            value(&completed, "CompleteMultipartUploadResult/ChecksumType"),
            "COMPOSITE"
        );
        assert_eq!(
            value(&completed, "CompleteMultipartUploadResult/Location"),
            "http://h/b/k"
        );
        assert_eq!(
            value(&completed, "CompleteMultipartUploadResult/ETag"),
            "\"abc-2\""
        );
        let copied = leaves_of(copy_object_result(at(1, 2), "\"e\"", None));
        assert_eq!(value(&copied, "CopyObjectResult/ETag"), "\"e\"");
        assert_eq!(
            value(&copied, "CopyObjectResult/LastModified"),
            "1970-01-01T00:00:01.002Z"
        );
        let part = leaves_of(copy_part_result(at(1, 2), "e", None));
        assert_eq!(value(&part, "CopyPartResult/ETag"), "\"e\"");
    }

    #[test]
    fn list_parts_and_uploads() {
        let parts = [
            PartEntry {
                part_number: 1,
                last_modified: at(10, 0),
                etag: "p1",
                size: 5 * 1024 * 1024,
                checksum: Some(ChecksumElement {
                    algorithm: "SHA1",
                    value: "c2hhMQ==",
                    kind: "FULL_OBJECT",
                }),
            },
            PartEntry {
                part_number: 10_000,
                last_modified: at(11, 0),
                etag: "p2",
                size: 1,
                checksum: None,
            },
        ];
        let body = ListPartsResult {
            bucket: "b",
            key: "k",
            upload_id: "u",
            part_number_marker: 0,
            next_part_number_marker: 10_000,
            max_parts: 1000,
            is_truncated: false,
            owner: OWNER,
            parts: &parts,
            checksum: Some(("SHA1", "COMPOSITE")),
        }
        .to_xml();
        let leaves_parts = leaves(&body);
        assert_eq!(
            values(&leaves_parts, "ListPartsResult/Part/ChecksumSHA1"),
            ["c2hhMQ=="]
        );
        assert_eq!(
            value(&leaves_parts, "ListPartsResult/ChecksumType"),
            "COMPOSITE"
        );
        assert_eq!(
            values(&leaves_parts, "ListPartsResult/Part/PartNumber"),
            ["1", "10000"]
        );
        assert_eq!(
            values(&leaves_parts, "ListPartsResult/Part/ETag"),
            ["\"p1\"", "\"p2\""]
        );
        assert_eq!(
            value(&leaves_parts, "ListPartsResult/Initiator/ID"),
            "owner-id"
        );
        assert_eq!(
            value(&leaves_parts, "ListPartsResult/NextPartNumberMarker"),
            "10000"
        );

        let uploads = [UploadEntry {
            key: "a b",
            upload_id: "u1",
            initiated: at(12, 0),
            owner: OWNER,
        }];
        let body = ListMultipartUploadsResult {
            bucket: "b",
            prefix: "",
            delimiter: Some("/"),
            key_marker: "",
            upload_id_marker: "",
            next_key_marker: "a b",
            next_upload_id_marker: "u1",
            max_uploads: 1,
            is_truncated: true,
            encoding: KeyEncoding::Url,
            uploads: &uploads,
            common_prefixes: &["c d/"],
        }
        .to_xml();
        let leaves_uploads = leaves(&body);
        let root = "ListMultipartUploadsResult";
        assert_eq!(
            value(&leaves_uploads, &format!("{root}/Upload/Key")),
            "a%20b"
        );
        assert_eq!(
            value(&leaves_uploads, &format!("{root}/NextKeyMarker")),
            "a%20b"
        );
        assert_eq!(
            value(&leaves_uploads, &format!("{root}/Upload/Initiated")),
            "1970-01-01T00:00:12.000Z"
        );
        assert_eq!(
            value(&leaves_uploads, &format!("{root}/CommonPrefixes/Prefix")),
            "c%20d/"
        );
    }

    #[test]
    fn delete_result_quiet_mode_lists_errors_only() {
        let deleted = [
            DeletedObject {
                key: "gone&",
                version_id: None,
            },
            DeletedObject {
                key: "v",
                version_id: Some("null"),
            },
        ];
        let errors = [DeleteObjectError {
            key: "locked<",
            version_id: None,
            code: S3ErrorCode::AccessDenied,
            message: None,
        }];
        let loud = leaves(
            &DeleteResult {
                quiet: false,
                deleted: &deleted,
                errors: &errors,
            }
            .to_xml(),
        );
        assert_eq!(values(&loud, "DeleteResult/Deleted/Key"), ["gone&", "v"]);
        assert_eq!(value(&loud, "DeleteResult/Deleted/VersionId"), "null");
        assert_eq!(value(&loud, "DeleteResult/Error/Key"), "locked<");
        assert_eq!(value(&loud, "DeleteResult/Error/Code"), "AccessDenied");
        assert_eq!(value(&loud, "DeleteResult/Error/Message"), "Access Denied");
        let quiet = leaves(
            &DeleteResult {
                quiet: true,
                deleted: &deleted,
                errors: &errors,
            }
            .to_xml(),
        );
        assert!(values(&quiet, "DeleteResult/Deleted/Key").is_empty());
        assert_eq!(value(&quiet, "DeleteResult/Error/Code"), "AccessDenied");
    }

    #[test]
    fn location_and_versioning() {
        assert_eq!(
            String::from_utf8(location_constraint("eu-west-1")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">eu-west-1</LocationConstraint>"
        );
        assert_eq!(
            String::from_utf8(versioning_configuration(None)).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VersioningConfiguration \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"></VersioningConfiguration>"
        );
        let suspended = leaves(&versioning_configuration(Some(VersioningStatus::Suspended)));
        assert_eq!(
            value(&suspended, "VersioningConfiguration/Status"),
            "Suspended"
        );
        let enabled = leaves(&versioning_configuration(Some(VersioningStatus::Enabled)));
        assert_eq!(value(&enabled, "VersioningConfiguration/Status"), "Enabled");
    }

    #[test]
    fn etags_are_quoted_once() {
        let single_quote_mark = leaves(&copy_object_result(UNIX_EPOCH, "\"", None));
        assert_eq!(value(&single_quote_mark, "CopyObjectResult/ETag"), "\"\"\"");
        let empty = leaves(&copy_object_result(UNIX_EPOCH, "", None));
        assert_eq!(value(&empty, "CopyObjectResult/ETag"), "\"\"");
    }
}
