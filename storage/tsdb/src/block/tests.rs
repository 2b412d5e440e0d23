use super::*;
use crate::chunk::XorChunk;
use crate::labels::{Labels, MatchOp, Matcher, Sample};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type Model = BTreeMap<Labels, BTreeMap<i64, u64>>;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

fn to_series(model: &Model, per_chunk: usize) -> Vec<(Labels, Vec<XorChunk>)> {
    model
        .iter()
        .map(|(l, s)| {
            let samples: Vec<Sample> = s
                .iter()
                .map(|(t, b)| Sample {
                    t: *t,
                    v: f64::from_bits(*b),
                })
                .collect();
            (l.clone(), XorChunk::encode_all(&samples, per_chunk))
        })
        .collect()
}

fn bounds(model: &Model) -> (i64, i64) {
    let ts = model.values().flat_map(|s| s.keys().copied());
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for t in ts {
        lo = lo.min(t);
        hi = hi.max(t);
    }
    if lo > hi {
        (0, 0)
    } else {
        (lo, hi)
    }
}

fn canon(series: Vec<(Labels, Vec<Sample>)>) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .into_iter()
        .map(|(l, s)| (l, s.iter().map(|x| (x.t, x.v.to_bits())).collect()))
        .collect()
}

fn expected(
    model: &Model,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(Labels, Vec<(i64, u64)>)> {
    model
        .iter()
        .filter(|(l, _)| matchers.iter().all(|m| m.matches_labels(l)))
        .map(|(l, s)| {
            (
                l.clone(),
                s.range(mint..=maxt)
                    .map(|(t, b)| (*t, *b))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

fn check_queries(
    block: &Block<Vec<u8>>,
    model: &Model,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<(), TestCaseError> {
    let got = block.select(matchers, mint, maxt);
    if crate::postings::check_matchers(matchers).is_err() {
        prop_assert!(matches!(got, Err(BlockQueryError::Matchers(_))));
        return Ok(());
    }
    let want = expected(model, matchers, mint, maxt);
    prop_assert_eq!(canon(got.unwrap()), want.clone());
    let labels: Vec<Labels> = want.iter().map(|(l, _)| l.clone()).collect();
    prop_assert_eq!(block.series(matchers, mint, maxt).unwrap(), labels.clone());
    let names: BTreeSet<String> = labels
        .iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.to_string()))
        .collect();
    prop_assert_eq!(
        block.label_names(matchers, mint, maxt).unwrap(),
        names.into_iter().collect::<Vec<_>>()
    );
    let jobs: BTreeSet<String> = labels
        .iter()
        .filter_map(|l| l.get("job").map(str::to_string))
        .collect();
    prop_assert_eq!(
        block.label_values("job", matchers, mint, maxt).unwrap(),
        jobs.into_iter().collect::<Vec<_>>()
    );
    Ok(())
}

fn small_model() -> Model {
    let mut model = Model::new();
    for (i, labels) in [
        l(&[("__name__", "up"), ("job", "api"), ("zone", "a")]),
        l(&[("__name__", "up"), ("job", "web")]),
        l(&[("__name__", "errors"), ("job", "api")]),
    ]
    .into_iter()
    .enumerate()
    {
        let samples = (0..50)
            .map(|t| (t * 10 + i as i64, (t as f64 * 0.5).to_bits()))
            .collect();
        model.insert(labels, samples);
    }
    model
}

#[test]
fn write_open_select() {
    let model = small_model();
    let bytes = write(0, 1000, to_series(&model, 7));
    let block = Block::open(bytes).unwrap();
    assert_eq!(
        (block.mint(), block.maxt(), block.series_count()),
        (0, 1000, 3)
    );
    let up = [
        Matcher::equal("__name__", "up"),
        Matcher::new("zone", MatchOp::Equal, "").unwrap(),
    ];
    let got = block.select(&up, 100, 200).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, l(&[("__name__", "up"), ("job", "web")]));
    assert_eq!(got[0].1.len(), 10);
    assert_eq!(
        block.label_names(&[], i64::MIN, i64::MAX).unwrap(),
        vec!["__name__", "job", "zone"]
    );
    assert_eq!(
        block.label_values("job", &[], i64::MIN, i64::MAX).unwrap(),
        vec!["api", "web"]
    );
    assert_eq!(
        block.label_values("nope", &[], 0, 10).unwrap(),
        Vec::<String>::new()
    );
    let empty = Block::open(write(5, 5, Vec::new())).unwrap();
    assert_eq!(empty.select(&up, i64::MIN, i64::MAX).unwrap(), vec![]);
}

#[test]
fn every_flipped_or_missing_byte_is_caught_on_open() {
    let bytes = write(0, 1000, to_series(&small_model(), 7));
    for len in 0..bytes.len() {
        assert!(Block::open(&bytes[..len]).is_err(), "len {len}");
    }
    for i in 0..bytes.len() {
        // Bytes 36..40 are the header's reserved word, outside its checksum.
        if (36..40).contains(&i) {
            continue;
        }
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        assert!(Block::open(b).is_err(), "byte {i}");
    }
}

/// Recomputes every checksum, so corrupt contents reach the parsers.
pub(crate) fn reseal(bytes: &mut [u8]) {
    let toc_start = bytes.len() - TOC_BYTES;
    let crc = crc32c::crc32c(&bytes[..32]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    for i in 0..SECTION_COUNT {
        let at = toc_start + i * TOC_ENTRY_BYTES;
        let offset = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
        let crc = crc32c::crc32c(&bytes[offset..offset + len]);
        bytes[at + 16..at + 20].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes[toc_start..toc_start + TOC_BYTES - 8]);
    bytes[toc_start + TOC_BYTES - 8..toc_start + TOC_BYTES - 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn corrupt_contents_with_good_checksums_never_panic() {
    let bytes = write(0, 1000, to_series(&small_model(), 7));
    let toc_start = bytes.len() - TOC_BYTES;
    for i in HEADER_BYTES..toc_start {
        // Low bits break values and counts, high bits varint continuations.
        let mut b = bytes.clone();
        b[i] ^= [0x01u8, 0x80, 0xff][i % 3];
        reseal(&mut b);
        crate::fuzzing::query_block(&b);
    }
}

#[test]
fn merge_prefers_later_blocks_and_drops_expired() {
    let a = l(&[("__name__", "a")]);
    let b = l(&[("__name__", "b")]);
    let mut m1 = Model::new();
    m1.insert(
        a.clone(),
        (0..10).map(|t| (t * 10, 1f64.to_bits())).collect(),
    );
    let mut m2 = Model::new();
    m2.insert(
        a.clone(),
        (5..15).map(|t| (t * 10, 2f64.to_bits())).collect(),
    );
    m2.insert(b.clone(), (0..3).map(|t| (t, 3f64.to_bits())).collect());
    let b1 = Block::open(write(0, 100, to_series(&m1, 4))).unwrap();
    let b2 = Block::open(write(0, 200, to_series(&m2, 4))).unwrap();
    let merged = Block::open(merge(&[&b1, &b2], 20).unwrap()).unwrap();
    assert_eq!((merged.mint(), merged.maxt()), (20, 200));
    let got = canon(merged.select(&[], i64::MIN, i64::MAX).unwrap());
    let want_a: Vec<(i64, u64)> = (2..15)
        .map(|t| (t * 10, if t < 5 { 1f64 } else { 2f64 }.to_bits()))
        .collect();
    assert_eq!(got, vec![(a, want_a)]);
}

fn arb_model() -> impl Strategy<Value = Model> {
    let labels =
        prop::collection::vec(("[a-c]|job|__name__", "[x-z]{1,2}"), 1..4).prop_map(Labels::new);
    let samples = prop::collection::btree_map(-500i64..500, any::<u64>(), 1..40);
    prop::collection::btree_map(labels, samples, 0..12)
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    let op = prop_oneof![
        Just(MatchOp::Equal),
        Just(MatchOp::NotEqual),
        Just(MatchOp::Regex),
        Just(MatchOp::NotRegex)
    ];
    (
        "[a-c]|job|__name__",
        op,
        prop_oneof![
            "[x-z]{0,2}",
            Just("x.*".to_string()),
            Just(".+".to_string())
        ],
    )
        .prop_map(|(n, op, v)| Matcher::new(&n, op, &v).unwrap())
}

proptest! {
    #[test]
    fn blocks_answer_like_the_model(
        model in arb_model(),
        per_chunk in 1usize..10,
        queries in prop::collection::vec((prop::collection::vec(arb_matcher(), 0..3), -600i64..600, -600i64..600), 1..6),
    ) {
        let (lo, hi) = bounds(&model);
        let block = Block::open(write(lo, hi, to_series(&model, per_chunk))).unwrap();
        prop_assert_eq!(block.series_count(), model.len());
        for (matchers, a, b) in queries {
            check_queries(&block, &model, &matchers, a.min(b), a.max(b))?;
        }
        check_queries(&block, &model, &[], i64::MIN, i64::MAX)?;
    }

    #[test]
    fn merge_equals_the_union(models in prop::collection::vec(arb_model(), 0..4), keep_from in -600i64..600) {
        let blocks: Vec<Block<Vec<u8>>> = models
            .iter()
            .map(|m| {
                let (lo, hi) = bounds(m);
                Block::open(write(lo, hi, to_series(m, 5))).unwrap()
            })
            .collect();
        let refs: Vec<&Block<Vec<u8>>> = blocks.iter().collect();
        let merged = Block::open(merge(&refs, keep_from).unwrap()).unwrap();
        let mut union = Model::new();
        for m in &models {
            for (l, s) in m {
                let entry = union.entry(l.clone()).or_default();
                entry.extend(s.range(keep_from..).map(|(t, b)| (*t, *b)));
            }
        }
        union.retain(|_, s| !s.is_empty());
        check_queries(&merged, &union, &[], i64::MIN, i64::MAX)?;
    }

    #[test]
    fn garbage_blocks_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        crate::fuzzing::block_bytes(&bytes);
    }
}

#[test]
fn a_head_cut_becomes_a_block() {
    let mut head = crate::Head::new(crate::HeadLimits {
        ooo_window_ms: 50,
        ..crate::HeadLimits::default()
    });
    for i in 0..10 {
        let (r, _) = head
            .get_or_create(&l(&[("__name__", "up"), ("i", &i.to_string())]))
            .unwrap();
        for t in (0..500).step_by(7) {
            head.append(
                r,
                Sample {
                    t,
                    v: (t * i) as f64,
                },
            )
            .unwrap();
        }
        head.append(r, Sample { t: 470, v: -1.0 }).unwrap();
    }
    let all = [Matcher::equal("__name__", "up")];
    let before = canon(head.select(&all, i64::MIN, 299).unwrap());
    let mint = head.stats().min_t.unwrap();
    let block = Block::open(write(mint, 299, head.cut(300))).unwrap();
    assert_eq!(
        canon(block.select(&all, i64::MIN, i64::MAX).unwrap()),
        before
    );
    assert_eq!(head.select(&all, i64::MIN, 299).unwrap(), vec![]);
    assert_eq!(block.label_values("i", &all, 0, 0).unwrap().len(), 10);
}
