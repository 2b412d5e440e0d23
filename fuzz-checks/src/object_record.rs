//! Feeds arbitrary bytes to the object store's on-disk decoders (segment
//! header, record header, payloads, data prefixes): they must return a value
//! or an error, never panic or over-read, and every payload they accept must
//! re-encode to exactly the same bytes.

use photon_object::record::{
    self, decode_data_prefix, decode_payload, decode_record, Payload, RecordKind, SegmentHeader,
};

const KINDS: [RecordKind; 4] = [
    RecordKind::ObjectPut,
    RecordKind::ObjectDelete,
    RecordKind::ChunkPut,
    RecordKind::ChunkDelete,
];

/// Re-encodes an accepted payload; the encoding is canonical.
fn reencode(payload: &Payload<'_>) -> Vec<u8> {
    match *payload {
        Payload::ObjectPut {
            bucket,
            key,
            meta,
            data,
        } => {
            let len = record::object_prefix_bytes(key.len(), meta.len(), data.len()) + data.len();
            let mut out = vec![0u8; len];
            record::encode_object_put(&mut out, bucket, key, meta, data);
            out
        }
        Payload::ObjectDelete { bucket, key } => {
            let mut out = vec![0u8; record::object_delete_payload_bytes(key.len())];
            record::encode_object_delete(&mut out, bucket, key);
            out
        }
        Payload::ChunkPut { blob, index, data } => {
            let mut out = vec![0u8; record::chunk_prefix_bytes(data.len()) + data.len()];
            record::encode_chunk_put(&mut out, blob, index, data);
            out
        }
        Payload::ChunkDelete(ids) => {
            let ids: Vec<(u64, u32)> = ids.iter().collect();
            let mut out = vec![0u8; record::chunk_delete_payload_bytes(ids.len())];
            record::encode_chunk_delete(&mut out, &ids);
            out
        }
    }
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Some((nonce, bytes)) = data.split_first_chunk::<8>() else {
        return;
    };
    let nonce = u64::from_le_bytes(*nonce);
    let _ = SegmentHeader::decode(bytes);
    if let Ok((header, payload)) = decode_record(bytes, nonce) {
        assert_eq!(header.nonce, nonce);
        let body = &bytes[40..40 + header.payload_len as usize];
        assert_eq!(reencode(&payload), body);
    }
    for kind in KINDS {
        if let Ok(payload) = decode_payload(kind, bytes) {
            assert_eq!(reencode(&payload), bytes);
        }
        if let Ok(prefix) = decode_data_prefix(kind, bytes) {
            assert!(prefix.prefix_bytes <= bytes.len());
            let _ = prefix.verify_blocks(0, &bytes[prefix.prefix_bytes..]);
        }
    }
}
