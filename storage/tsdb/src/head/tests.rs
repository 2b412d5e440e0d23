use super::*;
use crate::labels::MatchOp;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    )
}

fn s(t: i64, v: f64) -> Sample {
    Sample { t, v }
}

fn up() -> Matcher {
    Matcher::equal("__name__", "up")
}

#[test]
fn appends_and_selects() {
    let mut head = Head::new(HeadLimits::default());
    let a = l(&[("__name__", "up"), ("job", "api")]);
    let (r, created) = head.get_or_create(&a).unwrap();
    assert!(created);
    assert_eq!(head.get_or_create(&a).unwrap(), (r, false));
    for i in 0..300 {
        head.append(r, s(i * 1000, i as f64)).unwrap();
    }
    let got = head.select(&[up()], 10_000, 20_000).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), 11);
    assert_eq!(head.stats().samples, 300);
    assert_eq!(
        (head.stats().min_t, head.stats().max_t),
        (Some(0), Some(299_000))
    );
    assert_eq!(
        head.select(&[Matcher::equal("job", "")], 0, 1),
        Err(EmptyMatchersError)
    );
}

#[test]
fn prometheus_append_rules() {
    let mut head = Head::new(HeadLimits::default());
    let (r, _) = head.get_or_create(&l(&[("__name__", "up")])).unwrap();
    head.append(r, s(100, 1.0)).unwrap();
    // Same time, same value: a no-op. Same time, other value: refused.
    head.append(r, s(100, 1.0)).unwrap();
    assert!(matches!(
        head.append(r, s(100, 2.0)),
        Err(AppendError::DuplicateTimestamp { t: 100, .. })
    ));
    assert!(matches!(
        head.append(r, s(99, 1.0)),
        Err(AppendError::OutOfOrder {
            t: 99,
            max_t: 100,
            ..
        })
    ));
    assert_eq!(
        head.append(999, s(1, 1.0)),
        Err(AppendError::UnknownSeries { r: 999 })
    );
    head.append(r, s(200, f64::from_bits(crate::STALE_NAN)))
        .unwrap();
    head.append(r, s(200, f64::from_bits(crate::STALE_NAN)))
        .unwrap();
    assert_eq!(head.stats().samples, 2);
    head.cut(150);
    assert!(matches!(
        head.append(r, s(149, 1.0)),
        Err(AppendError::OutOfBounds { min_t: 150, .. })
    ));
}

#[test]
fn out_of_order_window_merges_on_read() {
    let mut head = Head::new(HeadLimits {
        ooo_window_ms: 1000,
        chunk_samples_max: 4,
        ..HeadLimits::default()
    });
    let (r, _) = head.get_or_create(&l(&[("__name__", "up")])).unwrap();
    for t in (0..20).map(|i| 2000 + i * 100) {
        head.append(r, s(t, t as f64)).unwrap();
    }
    for t in (0..10).map(|i| 2950 + i * 100) {
        head.append(r, s(t, -(t as f64))).unwrap();
    }
    assert!(matches!(
        head.append(r, s(2899, 0.0)),
        Err(AppendError::OutOfOrder { .. })
    ));
    assert!(matches!(
        head.append(r, s(3000, 1.0)),
        Err(AppendError::DuplicateTimestamp { .. })
    ));
    head.append(r, s(3000, 3000.0)).unwrap();
    let got = &head.select(&[up()], 0, i64::MAX).unwrap()[0].1;
    assert_eq!(got.len(), 30);
    assert!(got.windows(2).all(|w| w[0].t < w[1].t));
    let cut = head.cut(3400);
    let old: Vec<Sample> = cut[0].1.iter().flat_map(|c| c.samples()).collect();
    assert!(old.iter().all(|x| x.t < 3400) && old.windows(2).all(|w| w[0].t < w[1].t));
    assert_eq!(old.len() + head.stats().samples, 30);
}

#[test]
fn check_sees_the_whole_batch_and_the_series_limit() {
    let mut head = Head::new(HeadLimits {
        series_max: 2,
        ..HeadLimits::default()
    });
    let a = l(&[("__name__", "a")]);
    let b = l(&[("__name__", "b")]);
    let c = l(&[("__name__", "c")]);
    head.check(&[
        (a.clone(), vec![s(1, 1.0)]),
        (b.clone(), vec![s(1, 1.0)]),
        (a.clone(), vec![s(2, 1.0)]),
    ])
    .unwrap();
    assert!(matches!(
        head.check(&[(a.clone(), vec![s(2, 1.0)]), (a.clone(), vec![s(1, 1.0)])]),
        Err(AppendError::OutOfOrder { .. })
    ));
    assert!(matches!(
        head.check(&[(a.clone(), vec![s(2, 1.0), s(2, 3.0)])]),
        Err(AppendError::DuplicateTimestamp { .. })
    ));
    assert_eq!(
        head.check(&[(a, vec![]), (b, vec![]), (c.clone(), vec![])]),
        Err(AppendError::SeriesLimit { limit: 2 })
    );
    head.get_or_create(&l(&[("x", "1")])).unwrap();
    head.get_or_create(&l(&[("x", "2")])).unwrap();
    assert_eq!(
        head.get_or_create(&c),
        Err(AppendError::SeriesLimit { limit: 2 })
    );
}

#[test]
fn restore_keeps_refs_and_aliases_duplicates() {
    let mut head = Head::new(HeadLimits::default());
    let a = l(&[("__name__", "a")]);
    head.restore_series(7, a.clone());
    head.restore_series(9, a.clone());
    head.append(9, s(1, 1.0)).unwrap();
    assert_eq!(head.get_or_create(&a).unwrap(), (7, false));
    let (r, created) = head.get_or_create(&l(&[("__name__", "b")])).unwrap();
    assert!(created && r == 10);
}

/// Prints the approximate memory per active series (`--nocapture`).
#[test]
fn memory_per_series() {
    let series_count = 500;
    let mut head = Head::new(HeadLimits::default());
    let mut rng = crate::chunk::tests::Rng(3);
    let mut refs = Vec::new();
    for i in 0..series_count {
        let labels = l(&[
            ("__name__", "http_requests_total"),
            ("job", "api-server"),
            ("instance", &format!("10.0.{}.{}:9100", i / 250, i % 250)),
            ("method", ["GET", "POST", "PUT"][i % 3]),
            ("code", ["200", "404", "500"][(i / 3) % 3]),
            ("handler", &format!("/api/v1/resource{}", i % 20)),
        ]);
        refs.push(head.get_or_create(&labels).unwrap().0);
    }
    let empty = head.stats().memory_bytes;
    let mut counter = vec![0.0; series_count];
    // Two hours at 15 s.
    for step in 0..480i64 {
        for (i, r) in refs.iter().enumerate() {
            counter[i] += rng.below(100) as f64;
            head.append(*r, s(1_700_000_000_000 + step * 15_000, counter[i]))
                .unwrap();
        }
    }
    let stats = head.stats();
    println!(
        "per series: {} bytes without samples, {} bytes with 480 counter samples ({:.2} chunk bytes/sample)",
        empty / series_count,
        stats.memory_bytes / series_count,
        stats.chunk_bytes as f64 / stats.samples as f64
    );
    assert!(stats.memory_bytes / series_count < 4096);
}

// ---- The head against a simple model. ----

#[derive(Debug, Clone)]
enum Op {
    Batch(Vec<(usize, Vec<(i64, u8)>)>),
    Cut(i64),
    Query(Vec<(usize, MatchOp, usize)>, i64, i64),
    Checkpoint,
}

const NAMES: [&str; 3] = ["__name__", "job", "zone"];
const VALUES: [&str; 4] = ["", "a", "b", "a|b"];

fn pool() -> Vec<Labels> {
    let mut out = Vec::new();
    for n in ["up", "x"] {
        for job in ["a", "b"] {
            for zone in ["", "a"] {
                out.push(l(&[("__name__", n), ("job", job), ("zone", zone)]));
            }
        }
    }
    out
}

fn value_of(code: u8) -> f64 {
    match code % 4 {
        0 => f64::from_bits(crate::STALE_NAN),
        c => f64::from(c),
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    let sample = (0i64..400, any::<u8>());
    prop_oneof![
        6 => prop::collection::vec((0usize..8, prop::collection::vec(sample, 0..6)), 1..4).prop_map(Op::Batch),
        1 => (0i64..400).prop_map(Op::Cut),
        2 => (prop::collection::vec((0usize..3, prop_oneof![Just(MatchOp::Equal), Just(MatchOp::NotEqual), Just(MatchOp::Regex), Just(MatchOp::NotRegex)], 0usize..4), 0..3), 0i64..400, 0i64..400)
            .prop_map(|(m, a, b)| Op::Query(m, a.min(b), a.max(b))),
        1 => Just(Op::Checkpoint),
    ]
}

type Model = BTreeMap<Labels, BTreeMap<i64, u64>>;

fn model_place(
    model: &Model,
    labels: &Labels,
    min_valid: i64,
    window: i64,
    t: i64,
    bits: u64,
) -> Result<bool, &'static str> {
    if t < min_valid {
        return Err("bounds");
    }
    let samples = model.get(labels);
    let newest = samples.and_then(|m| m.keys().next_back().copied());
    match newest {
        Some(max) if t <= max => {
            if t < max && !(window > 0 && t >= max - window) {
                return Err("order");
            }
            match samples.and_then(|m| m.get(&t)) {
                Some(&b) if b == bits => Ok(false),
                Some(_) => Err("duplicate"),
                None => Ok(true),
            }
        }
        _ => Ok(true),
    }
}

fn kind(e: &AppendError) -> &'static str {
    match e {
        AppendError::OutOfBounds { .. } => "bounds",
        AppendError::OutOfOrder { .. } => "order",
        AppendError::DuplicateTimestamp { .. } => "duplicate",
        AppendError::SeriesLimit { .. } => "limit",
        AppendError::UnknownSeries { .. } => "unknown",
    }
}

fn model_batch(
    model: &Model,
    batch: &[(Labels, Vec<Sample>)],
    min_valid: i64,
    window: i64,
    series_max: usize,
) -> Result<Model, &'static str> {
    let mut m = model.clone();
    for (labels, samples) in batch {
        if !m.contains_key(labels) {
            if m.len() >= series_max {
                return Err("limit");
            }
            m.insert(labels.clone(), BTreeMap::new());
        }
        for x in samples {
            if model_place(&m, labels, min_valid, window, x.t, x.v.to_bits())? {
                m.get_mut(labels)
                    .expect("inserted")
                    .insert(x.t, x.v.to_bits());
            }
        }
    }
    Ok(m)
}

fn canon(series: Vec<(Labels, Vec<Sample>)>) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .into_iter()
        .map(|(l, s)| (l, s.iter().map(|x| (x.t, x.v.to_bits())).collect()))
        .collect()
}

fn check_query(
    head: &Head,
    model: &Model,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<(), TestCaseError> {
    let got = head.select(matchers, mint, maxt);
    if postings::check_matchers(matchers).is_err() {
        prop_assert!(got.is_err());
        return Ok(());
    }
    let expected: Vec<(Labels, Vec<(i64, u64)>)> = model
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
        .collect();
    prop_assert_eq!(canon(got.unwrap()), expected.clone());
    let labels: Vec<Labels> = expected.iter().map(|(l, _)| l.clone()).collect();
    prop_assert_eq!(head.series(matchers, mint, maxt).unwrap(), labels.clone());
    let names: BTreeSet<String> = labels
        .iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.to_string()))
        .collect();
    prop_assert_eq!(
        head.label_names(matchers, mint, maxt).unwrap(),
        names.into_iter().collect::<Vec<_>>()
    );
    let jobs: BTreeSet<String> = labels
        .iter()
        .filter_map(|l| l.get("job").map(str::to_string))
        .collect();
    prop_assert_eq!(
        head.label_values("job", matchers, mint, maxt).unwrap(),
        jobs.into_iter().collect::<Vec<_>>()
    );
    Ok(())
}

fn replay(records: &[WalRecord], limits: HeadLimits, min_valid: i64) -> Head {
    let mut head = Head::new(limits);
    head.set_min_valid_t(min_valid);
    for r in records {
        match r {
            WalRecord::Series { r, labels } => head.restore_series(*r, labels.clone()),
            WalRecord::Samples(samples) => {
                for (r, x) in samples {
                    head.append(*r, *x).unwrap();
                }
            }
        }
    }
    head
}

fn run_ops(ops: Vec<Op>, window: i64) -> Result<(), TestCaseError> {
    let limits = HeadLimits {
        series_max: 6,
        ooo_window_ms: window,
        chunk_samples_max: 5,
    };
    let mut head = Head::new(limits);
    let mut model = Model::new();
    let pool = pool();
    let mut min_valid = i64::MIN;
    let mut t_base = 0;
    for op in ops {
        match op {
            Op::Batch(batch) => {
                let batch: Vec<(Labels, Vec<Sample>)> = batch
                    .into_iter()
                    .map(|(i, xs)| {
                        (
                            pool[i].clone(),
                            xs.into_iter()
                                .map(|(t, v)| s(t_base + t, value_of(v)))
                                .collect(),
                        )
                    })
                    .collect();
                let expected = model_batch(&model, &batch, min_valid, window, limits.series_max);
                match (head.check(&batch), expected) {
                    (Ok(()), Ok(next)) => {
                        for (labels, samples) in &batch {
                            let (r, _) = head.get_or_create(labels).unwrap();
                            for x in samples {
                                head.append(r, *x).unwrap();
                            }
                        }
                        model = next;
                    }
                    (Err(e), Err(k)) => prop_assert_eq!(kind(&e), k),
                    (got, want) => {
                        prop_assert!(false, "check {:?}, model {:?}", got, want.map(|_| ()))
                    }
                }
                t_base += 50;
            }
            Op::Cut(offset) => {
                let before = t_base + offset - 200;
                let cut = head.cut(before);
                let cut: Vec<(Labels, Vec<(i64, u64)>)> = cut
                    .into_iter()
                    .map(|(l, chunks)| {
                        prop_assert!(chunks.windows(2).all(|w| w[0].max_t() < w[1].min_t()));
                        prop_assert!(chunks
                            .iter()
                            .all(|c| c.len() <= limits.chunk_samples_max && !c.is_empty()));
                        Ok((
                            l,
                            chunks
                                .iter()
                                .flat_map(|c| c.samples())
                                .map(|x| (x.t, x.v.to_bits()))
                                .collect(),
                        ))
                    })
                    .collect::<Result<_, TestCaseError>>()?;
                let mut expected = Vec::new();
                for (l, samples) in model.iter_mut() {
                    let keep = samples.split_off(&before);
                    let old = std::mem::replace(samples, keep);
                    if !old.is_empty() {
                        expected.push((l.clone(), old.into_iter().collect::<Vec<_>>()));
                    }
                }
                model.retain(|_, s| !s.is_empty());
                min_valid = min_valid.max(before);
                prop_assert_eq!(cut, expected);
                prop_assert_eq!(head.stats().series, model.len());
            }
            Op::Query(ms, mint, maxt) => {
                let matchers: Vec<Matcher> = ms
                    .into_iter()
                    .map(|(n, op, v)| Matcher::new(NAMES[n], op, VALUES[v]).unwrap())
                    .collect();
                check_query(
                    &head,
                    &model,
                    &matchers,
                    t_base - 400 + mint,
                    t_base - 400 + maxt,
                )?;
            }
            Op::Checkpoint => {
                let restored = replay(&head.checkpoint(), limits, min_valid);
                let all = [Matcher::new("job", MatchOp::Regex, ".+").unwrap()];
                prop_assert_eq!(
                    canon(restored.select(&all, i64::MIN, i64::MAX).unwrap()),
                    canon(head.select(&all, i64::MIN, i64::MAX).unwrap())
                );
                prop_assert_eq!(restored.stats().samples, head.stats().samples);
            }
        }
        let stats = head.stats();
        prop_assert_eq!(
            stats.samples,
            model.values().map(BTreeMap::len).sum::<usize>()
        );
    }
    check_query(&head, &model, &[], i64::MIN, i64::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn head_matches_model_in_order(ops in prop::collection::vec(arb_op(), 1..40)) {
        run_ops(ops, 0)?;
    }

    #[test]
    fn head_matches_model_out_of_order(ops in prop::collection::vec(arb_op(), 1..40)) {
        run_ops(ops, 120)?;
    }
}
