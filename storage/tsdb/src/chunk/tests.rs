use super::*;
use crate::labels::STALE_NAN;
use proptest::prelude::*;

fn encode(samples: &[(i64, u64)]) -> XorChunk {
    let mut c = XorChunk::new();
    for &(t, bits) in samples {
        c.append(t, f64::from_bits(bits));
    }
    c
}

fn bits_of(samples: &[Sample]) -> Vec<(i64, u64)> {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

/// Deterministic xorshift, so measurements repeat.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn empty_chunk_round_trips() {
    let c = XorChunk::new();
    assert_eq!(c.bytes(), &[0, 0]);
    assert_eq!(XorChunk::decode_all(c.bytes()).unwrap(), vec![]);
    assert!(XorChunk::from_bytes(c.bytes()).unwrap().is_empty());
    assert_eq!(
        XorChunk::decode(&[0, 0, 1]).unwrap_err(),
        ChunkError::TrailingBytes { bytes: 1 }
    );
    assert_eq!(XorChunk::decode(&[0]).unwrap_err(), ChunkError::NoHeader);
}

#[test]
fn extremes_and_stale_markers_round_trip() {
    let samples = vec![
        (i64::MIN, STALE_NAN),
        (i64::MIN + 1, f64::NAN.to_bits()),
        (0, 0x7ff8_dead_beef_0001),
        (1, (-0.0f64).to_bits()),
        (i64::MAX - 1, f64::INFINITY.to_bits()),
        (i64::MAX, 1),
    ];
    let c = encode(&samples);
    assert_eq!(c.min_t(), i64::MIN);
    assert_eq!(c.max_t(), i64::MAX);
    let out = XorChunk::decode_all(c.bytes()).unwrap();
    assert_eq!(bits_of(&out), samples);
    assert!(crate::is_stale(out[0].v));
}

#[test]
fn regular_scrapes_cost_about_a_bit_per_timestamp() {
    let samples: Vec<(i64, u64)> = (0..120)
        .map(|i| (1_700_000_000_000 + i * 15_000, 1.0f64.to_bits()))
        .collect();
    let c = encode(&samples);
    // Header + 6-byte varint + 8-byte value + delta varint, then 2 bits a sample.
    assert!(
        c.bytes().len() < 2 + 6 + 8 + 3 + 120 * 2 / 8 + 2,
        "{}",
        c.bytes().len()
    );
}

#[test]
fn truncation_and_garbage_are_errors_not_panics() {
    let samples: Vec<(i64, u64)> = (0..50)
        .map(|i| (i * 1000 + (i * i) % 7, (i as f64 * 1.37).to_bits()))
        .collect();
    let c = encode(&samples);
    let full = c.bytes();
    for len in 0..full.len() {
        assert!(XorChunk::decode_all(&full[..len]).is_err(), "len {len}");
    }
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let mut b = full.to_vec();
        let i = rng.below(b.len() as u64) as usize;
        b[i] ^= 1 << rng.below(8);
        // Any outcome but a panic is fine; usually an error or other samples.
        let _ = XorChunk::decode_all(&b);
        let _ = XorChunk::from_bytes(&b);
    }
}

#[test]
fn from_bytes_resumes_appending() {
    let samples: Vec<(i64, u64)> = (0..30)
        .map(|i| (i * 10 + i % 3, (i as f64).sqrt().to_bits()))
        .collect();
    let mut c = XorChunk::from_bytes(encode(&samples[..17]).bytes()).unwrap();
    assert_eq!((c.min_t(), c.max_t(), c.len()), (0, 16 * 10 + 1, 17));
    for &(t, bits) in &samples[17..] {
        c.append(t, f64::from_bits(bits));
    }
    assert_eq!(c.bytes(), encode(&samples).bytes());
}

/// Prints bytes/sample for realistic series (`cargo test -- --nocapture`).
#[test]
fn measure_bytes_per_sample() {
    let mut rng = Rng(7);
    let n = 120 * 100;
    let start = 1_700_000_000_000i64;
    let mut cases: Vec<(&str, Vec<Sample>)> = Vec::new();
    let mut counter = 0.0;
    cases.push((
        "counter +rand(0..100) every 15s, exact",
        (0..n)
            .map(|i| {
                counter += rng.below(100) as f64;
                Sample {
                    t: start + i * 15_000,
                    v: counter,
                }
            })
            .collect(),
    ));
    counter = 0.0;
    cases.push((
        "counter +rand(0..100) every 15s, +-5ms jitter",
        (0..n)
            .map(|i| {
                counter += rng.below(100) as f64;
                let jitter = rng.below(11) as i64 - 5;
                Sample {
                    t: start + i * 15_000 + jitter,
                    v: counter,
                }
            })
            .collect(),
    ));
    cases.push((
        "gauge random f64 in [0,1) every 15s",
        (0..n)
            .map(|i| Sample {
                t: start + i * 15_000,
                v: (rng.next() >> 11) as f64 / (1u64 << 53) as f64,
            })
            .collect(),
    ));
    cases.push((
        "gauge random 0..1000 integers every 15s",
        (0..n)
            .map(|i| Sample {
                t: start + i * 15_000,
                v: rng.below(1000) as f64,
            })
            .collect(),
    ));
    cases.push((
        "constant (up=1) every 15s",
        (0..n)
            .map(|i| Sample {
                t: start + i * 15_000,
                v: 1.0,
            })
            .collect(),
    ));
    for (name, samples) in cases {
        let chunks = XorChunk::encode_all(&samples, SAMPLES_PER_CHUNK_MAX);
        let bytes: usize = chunks.iter().map(|c| c.bytes().len()).sum();
        let back: Vec<Sample> = chunks.iter().flat_map(|c| c.samples()).collect();
        assert_eq!(bits_of(&back), bits_of(&samples));
        println!(
            "{name}: {:.2} bytes/sample",
            bytes as f64 / samples.len() as f64
        );
    }
}

fn arb_value_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(STALE_NAN),
        Just(f64::NAN.to_bits()),
        (0u64..1000).prop_map(|x| (x as f64).to_bits()),
        any::<f64>().prop_map(f64::to_bits),
        (0u64..1 << 20).prop_map(|payload| 0x7ff0_0000_0000_0001 | payload),
    ]
}

fn arb_samples() -> impl Strategy<Value = Vec<(i64, u64)>> {
    let step = prop_oneof![
        4 => 1u64..30_000,
        1 => 1u64..u64::MAX / 4,
        1 => Just(15_000u64),
    ];
    (
        any::<i64>(),
        prop::collection::vec((step, arb_value_bits()), 0..300),
    )
        .prop_map(|(start, steps)| {
            let mut t = start;
            let mut out = Vec::new();
            for (step, bits) in steps {
                let Some(next) = (t as i128)
                    .checked_add(step as i128)
                    .filter(|&n| n <= i64::MAX as i128)
                else {
                    break;
                };
                out.push((t, bits));
                t = next as i64;
            }
            out
        })
}

proptest! {
    #[test]
    fn chunks_round_trip_bit_exactly(samples in arb_samples()) {
        let c = encode(&samples);
        let out = XorChunk::decode_all(c.bytes()).unwrap();
        prop_assert_eq!(bits_of(&out), samples.clone());
        let back = XorChunk::from_bytes(c.bytes()).unwrap();
        prop_assert_eq!(back.len(), samples.len());
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            prop_assert_eq!((back.min_t(), back.max_t()), (first.0, last.0));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = XorChunk::decode_all(&bytes);
        let _ = XorChunk::from_bytes(&bytes);
    }
}
