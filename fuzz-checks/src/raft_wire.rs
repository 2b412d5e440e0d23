//! Feeds arbitrary bytes to what a Raft peer's messages are decoded with
//! (`photon_control::raft::codec`): log entries (`appendEntries`), votes,
//! log ids, snapshot metadata (`installSnapshot`) and the txns followers
//! forward to the leader (`propose`). The first byte picks the decoder.
//! Each must return a value or an error, never panic; a decoded txn or
//! entry must encode again and decode to the same value.

use photon_control::raft::codec;

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(txn) = codec::decode_txn(bytes) {
                let again = codec::encode_txn(&txn).expect("a decoded txn encodes");
                assert_eq!(codec::decode_txn(&again).expect("decodes again"), txn);
            }
        }
        1 => {
            if let Ok(entry) = codec::decode_entry(bytes) {
                let again = codec::encode_entry(&entry).expect("a decoded entry encodes");
                let twice = codec::decode_entry(&again).expect("decodes again");
                assert_eq!(format!("{twice:?}"), format!("{entry:?}"));
            }
        }
        2 => {
            let _ = codec::decode_vote(bytes);
        }
        3 => {
            let _ = codec::decode_log_id(bytes);
        }
        _ => {
            let _ = codec::decode_snapshot_meta(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use photon_control::kv::{
        Command, Compare, CompareResult, CompareTarget, PutRequest, RequestOp, TxnRequest,
    };
    use photon_control::raft::codec;
    use photon_control::raft::Proposal;

    /// One valid message per decoder, tagged with its selector byte: the
    /// seeds of fuzz/corpus/raft_wire (`PHOTON_WRITE_SEEDS=1` writes them).
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let txn = TxnRequest {
            compare: vec![Compare {
                key: b"node/2".to_vec(),
                range_end: Vec::new(),
                target: CompareTarget::Version(0),
                result: CompareResult::Equal,
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b"node/2".to_vec(),
                value: b"{}".to_vec(),
                ..Default::default()
            })],
            failure: Vec::new(),
        };
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        let entry = openraft::Entry::<photon_control::raft::TypeConfig> {
            log_id,
            payload: openraft::EntryPayload::Normal(Proposal::one(7, Command::Txn(txn.clone()))),
        };
        let vote = openraft::Vote::new_committed(3, 1);
        let tagged = |tag: u8, bytes: Vec<u8>| {
            let mut v = vec![tag];
            v.extend(bytes);
            v
        };
        vec![
            ("seed-txn", tagged(0, codec::encode_txn(&txn).unwrap())),
            (
                "seed-entry",
                tagged(1, codec::encode_entry(&entry).unwrap()),
            ),
            ("seed-vote", tagged(2, codec::encode_vote(&vote).unwrap())),
            (
                "seed-log-id",
                tagged(3, codec::encode_log_id(&log_id).unwrap()),
            ),
        ]
    }

    #[test]
    fn valid_messages_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/raft_wire");
        for (name, input) in seeds() {
            super::check(&input);
            if std::env::var_os("PHOTON_WRITE_SEEDS").is_some() {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(name), &input).unwrap();
            }
        }
    }
}
