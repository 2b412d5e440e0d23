//! Feeds arbitrary bytes to the Raft log's record decoder: it must return a
//! record, "short", or an error, and never panic or over-read.

use photon_control::logstore::decode_record;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        match decode_record(&data[at..]) {
            Ok(Some((record, used))) => {
                assert!(used >= 16 + record.payload.len());
                at += used;
            }
            Ok(None) | Err(_) => break,
        }
    }
}
