//! On-disk framing of segment files.
//!
//! A segment file starts with a 16-byte header:
//! `magic "PHLOGSEG" | format version u32 LE | crc32c(magic, version) u32 LE`.
//! Records follow back to back:
//! `payload length u32 LE | crc32c(index, payload) u32 LE | index u64 LE | payload`.
//! The CRC covers the index too, so a record copied to the wrong place is
//! detected. Nothing else is in the file: its name carries its first index.

/// Bytes of the segment header.
pub const SEGMENT_HEADER_BYTES: usize = 16;
/// Bytes of a record's header (length, CRC, index).
pub const RECORD_HEADER_BYTES: usize = 16;
/// Largest payload a record may carry; a larger length on disk is corruption
/// (it also bounds what a corrupt length can make recovery allocate).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 64 << 20;

const MAGIC: &[u8; 8] = b"PHLOGSEG";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record claims {bytes} payload bytes, above the limit {RECORD_PAYLOAD_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("bad segment header")]
    BadHeader,
}

/// A record as it lies in a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub index: u64,
    pub payload: &'a [u8],
}

pub fn encode_header() -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..12]);
    h[12..16].copy_from_slice(&crc.to_le_bytes());
    h
}

pub fn check_header(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.len() < SEGMENT_HEADER_BYTES || bytes[..8] != MAGIC[..] {
        return Err(DecodeError::BadHeader);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if version != FORMAT_VERSION || crc != crc32c::crc32c(&bytes[..12]) {
        return Err(DecodeError::BadHeader);
    }
    Ok(())
}

fn record_crc(index: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&index.to_le_bytes()), payload)
}

/// Appends the framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, index: u64, payload: &[u8]) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
        "payload above the record limit"
    );
    out.reserve(RECORD_HEADER_BYTES + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&record_crc(index, payload).to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the record at the start of `buf`.
///
/// `Ok(None)` means `buf` ends before the record does (a short tail);
/// `Ok(Some((record, consumed)))` a complete, checksummed record.
pub fn decode_record(buf: &[u8]) -> Result<Option<(RecordRef<'_>, usize)>, DecodeError> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::TooLarge { bytes: len });
    }
    let stored = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut index_bytes = [0u8; 8];
    index_bytes.copy_from_slice(&buf[8..16]);
    let index = u64::from_le_bytes(index_bytes);
    let total = RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Ok(None);
    }
    let payload = &buf[RECORD_HEADER_BYTES..total];
    let computed = record_crc(index, payload);
    if computed != stored {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(Some((RecordRef { index, payload }, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip_and_rejects_garbage() {
        let h = encode_header();
        assert_eq!(check_header(&h), Ok(()));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(check_header(&bad), Err(DecodeError::BadHeader));
        assert_eq!(check_header(&h[..10]), Err(DecodeError::BadHeader));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, b"hello raft");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut copy = buf.clone();
                copy[byte] ^= 1 << bit;
                if let Ok(Some((r, _))) = decode_record(&copy) {
                    panic!("corruption at byte {byte} bit {bit} decoded as {r:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut buf = Vec::new();
            for (index, payload) in &records {
                encode_record(&mut buf, *index, payload);
            }
            let mut at = 0;
            for (index, payload) in &records {
                let (r, used) = decode_record(&buf[at..]).unwrap().unwrap();
                prop_assert_eq!(r.index, *index);
                prop_assert_eq!(r.payload, &payload[..]);
                at += used;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn any_prefix_is_short_never_wrong(payload in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..216) {
            let mut buf = Vec::new();
            encode_record(&mut buf, 7, &payload);
            let cut = cut.min(buf.len() - 1);
            prop_assert_eq!(decode_record(&buf[..cut]), Ok(None));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_record(&bytes);
            let _ = check_header(&bytes);
        }
    }
}
