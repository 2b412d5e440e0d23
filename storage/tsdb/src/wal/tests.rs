use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

fn sample_records() -> Vec<WalRecord> {
    vec![
        WalRecord::Series {
            r: 1,
            labels: labels(&[("__name__", "up"), ("job", "api")]),
        },
        WalRecord::Samples(vec![
            (1, Sample { t: 1000, v: 1.0 }),
            (
                u64::MAX,
                Sample {
                    t: i64::MIN,
                    v: f64::from_bits(crate::STALE_NAN),
                },
            ),
        ]),
        WalRecord::Series {
            r: 2,
            labels: Labels::default(),
        },
        WalRecord::Samples(vec![]),
    ]
}

/// Compares with value bits, so NaNs compare equal to themselves.
type Canon = (u64, Labels, Vec<(u64, i64, u64)>);

fn canon(records: &[WalRecord]) -> Vec<Canon> {
    records
        .iter()
        .map(|r| match r {
            WalRecord::Series { r, labels } => (*r, labels.clone(), vec![]),
            WalRecord::Samples(s) => (
                0,
                Labels::default(),
                s.iter().map(|(r, s)| (*r, s.t, s.v.to_bits())).collect(),
            ),
        })
        .collect()
}

fn encode_all(records: &[WalRecord]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for r in records {
        encode(r, &mut out);
        ends.push(out.len());
    }
    (out, ends)
}

#[test]
fn round_trip_keeps_value_bits() {
    let records = sample_records();
    let (bytes, _) = encode_all(&records);
    let mut reader = WalReader::new(&bytes);
    let back: Vec<WalRecord> = reader.by_ref().collect();
    assert_eq!(canon(&back), canon(&records));
    assert_eq!(reader.end(), WalEnd::Clean);
    assert_eq!(reader.valid_len(), bytes.len());
}

#[test]
fn a_torn_tail_at_every_offset_is_cut_at_the_last_whole_frame() {
    let records = sample_records();
    let (bytes, ends) = encode_all(&records);
    for len in 0..=bytes.len() {
        let mut reader = WalReader::new(&bytes[..len]);
        let back: Vec<WalRecord> = reader.by_ref().collect();
        let whole = ends.iter().filter(|&&e| e <= len).count();
        assert_eq!(canon(&back), canon(&records[..whole]), "len {len}");
        let valid = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(reader.valid_len(), valid);
        let expected = if valid == len {
            WalEnd::Clean
        } else {
            WalEnd::TornTail { offset: valid }
        };
        assert_eq!(reader.end(), expected, "len {len}");
        assert!(!reader.corrupt_in_middle());
    }
}

#[test]
fn a_zeroed_or_garbled_last_frame_is_a_torn_tail() {
    let records = sample_records();
    let (mut bytes, ends) = encode_all(&records);
    let last_start = ends[ends.len() - 2];
    bytes[last_start + 10] ^= 0x40;
    let mut reader = WalReader::new(&bytes);
    assert_eq!(reader.by_ref().count(), records.len() - 1);
    assert_eq!(reader.end(), WalEnd::TornTail { offset: last_start });
    bytes.truncate(last_start);
    bytes.extend_from_slice(&[0; 4096]);
    let mut reader = WalReader::new(&bytes);
    assert_eq!(reader.by_ref().count(), records.len() - 1);
    assert_eq!(reader.end(), WalEnd::TornTail { offset: last_start });
}

#[test]
fn corruption_before_valid_frames_is_reported() {
    let records = sample_records();
    let (bytes, ends) = encode_all(&records);
    for at in 0..ends[0] {
        let mut b = bytes.clone();
        b[at] ^= 0x01;
        let mut reader = WalReader::new(&b);
        assert_eq!(reader.by_ref().count(), 0);
        assert!(reader.corrupt_in_middle(), "byte {at}");
        assert_eq!(
            reader.end(),
            WalEnd::Corrupt {
                offset: 0,
                next_valid: Some(ends[0])
            }
        );
    }
}

#[test]
fn a_checksummed_but_invalid_payload_is_corruption() {
    // Labels out of order: the checksum holds, the payload is refused.
    let mut bytes = Vec::new();
    frame(&mut bytes, TYPE_SERIES, |p| {
        p.extend_from_slice(&7u64.to_le_bytes());
        put_uvarint(p, 2);
        for s in ["b", "1", "a", "2"] {
            put_uvarint(p, 1);
            p.extend_from_slice(s.as_bytes());
        }
    });
    let mut reader = WalReader::new(&bytes);
    assert_eq!(reader.by_ref().count(), 0);
    assert_eq!(
        reader.end(),
        WalEnd::Corrupt {
            offset: 0,
            next_valid: None
        }
    );
}

#[test]
fn big_sample_records_are_split_into_frames() {
    let samples: Vec<(u64, Sample)> = (0..SAMPLES_PER_RECORD_MAX as u64 * 2 + 5)
        .map(|i| {
            (
                i % 100,
                Sample {
                    t: i as i64,
                    v: i as f64,
                },
            )
        })
        .collect();
    let mut bytes = Vec::new();
    encode(&WalRecord::Samples(samples.clone()), &mut bytes);
    let back: Vec<(u64, Sample)> = WalReader::new(&bytes)
        .flat_map(|r| match r {
            WalRecord::Samples(s) => s,
            WalRecord::Series { .. } => panic!("no series written"),
        })
        .collect();
    assert_eq!(back, samples);
}

fn arb_labels() -> impl Strategy<Value = Labels> {
    prop::collection::vec(("[a-z_]{1,6}", "\\PC{0,8}"), 0..5).prop_map(Labels::new)
}

fn arb_record() -> impl Strategy<Value = WalRecord> {
    prop_oneof![
        (any::<u64>(), arb_labels()).prop_map(|(r, labels)| WalRecord::Series { r, labels }),
        prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..20).prop_map(|v| {
            WalRecord::Samples(
                v.into_iter()
                    .map(|(r, t, bits)| {
                        (
                            r,
                            Sample {
                                t,
                                v: f64::from_bits(bits),
                            },
                        )
                    })
                    .collect(),
            )
        }),
    ]
}

proptest! {
    #[test]
    fn records_round_trip(records in prop::collection::vec(arb_record(), 0..10)) {
        let (bytes, _) = encode_all(&records);
        let back: Vec<WalRecord> = WalReader::new(&bytes).collect();
        prop_assert_eq!(canon(&back), canon(&records));
    }

    #[test]
    fn truncation_anywhere_yields_a_prefix(records in prop::collection::vec(arb_record(), 1..6), cut in any::<prop::sample::Index>()) {
        let (bytes, ends) = encode_all(&records);
        let len = cut.index(bytes.len() + 1);
        let mut reader = WalReader::new(&bytes[..len]);
        let back: Vec<WalRecord> = reader.by_ref().collect();
        let whole = ends.iter().filter(|&&e| e <= len).count();
        prop_assert_eq!(canon(&back), canon(&records[..whole]));
        prop_assert!(!reader.corrupt_in_middle());
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut reader = WalReader::new(&bytes);
        for _ in reader.by_ref() {}
        prop_assert!(reader.valid_len() <= bytes.len());
    }
}
