//! Feeds arbitrary bytes to the volume journal's decoders (what recovery
//! reads from disk): a batch, a whole journal scan, a record stream. They
//! must return records or an error, never panic; whatever a scan accepts
//! must re-encode to the same records (no silent reinterpretation), and
//! replaying it into the extent maps must not panic either; slots past the
//! data file are refused, so memory stays bounded by the file's size.

use photon_volume::journal::{decode_batch, scan, Record, KIND_CHECKPOINT, KIND_JOURNAL};
use photon_volume::state::State;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let _ = decode_batch(data, KIND_JOURNAL, 0, 1);
    let _ = decode_batch(data, KIND_CHECKPOINT, 0, 1);
    let records = scan(data, 0).records;
    let mut bytes = Vec::new();
    records.iter().for_each(|r| r.encode(&mut bytes));
    assert_eq!(Record::decode_all(&bytes).unwrap(), records);
    if let Ok(direct) = Record::decode_all(data) {
        let mut state = State::default();
        direct.iter().take(10_000).for_each(|r| state.replay(r));
        // A data file of at most 4096 slots (1 GiB): records naming slots
        // beyond it are refused, not sized into memory.
        let slots_in_file = u32::from(data.first().copied().unwrap_or(0)) * 16;
        if state.rebuild_slots(slots_in_file).is_ok() {
            let (used, spanned) = state.slot_counts();
            assert!(used <= spanned && spanned == u64::from(slots_in_file));
        }
    }
}
