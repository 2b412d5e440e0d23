//! Feeds arbitrary bytes to the Raft log's record decoder: it must return a
//! record, "short", or an error, and never panic or over-read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photon_control::logstore::decode_record;

fuzz_target!(|data: &[u8]| {
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
});
