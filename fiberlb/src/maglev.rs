//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: a
//! table of `M` (prime) entries, each naming a backend. Every backend walks
//! its own permutation of the table (`offset + j * skip mod M`, both from
//! hashes of its name) and claims the first free entry it meets; backends
//! take turns, so each gets `M / N` entries (or a share proportional to its
//! weight), and removing one backend moves few entries that belonged to the
//! others. A flow's backend is `table[hash(5-tuple) % M]`.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The default table size: prime, and large enough that 1% share accuracy
/// holds up to a few hundred backends.
pub const TABLE_SIZE_DEFAULT: u32 = 65_537;
/// Backends per table.
pub const BACKENDS_MAX: usize = 4096;
/// Largest weight (weights are relative; 0 means "in the pool but drained").
pub const WEIGHT_MAX: u32 = 1 << 16;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_0001;
const SEED_SKIP: u64 = 0x6d61_676c_6576_0002;

/// A backend as the table sees it: a stable name (like `10.0.0.5:80`) and a
/// weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub weight: u32,
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("table size {0} is not a prime above 2")]
    SizeNotPrime(u32),
    #[error("{0} backends exceed the limit of {BACKENDS_MAX}")]
    TooManyBackends(usize),
    #[error("weight {weight} of backend {name} exceeds {WEIGHT_MAX}")]
    WeightTooLarge { name: String, weight: u32 },
    #[error("backend {0} is listed twice")]
    Duplicate(String),
    #[error(
        "table size {size} is too small for {backends} backends (want at least 100 entries each)"
    )]
    TooSmall { size: u32, backends: usize },
}

fn is_prime(n: u32) -> bool {
    if n < 3 || n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Builds the lookup table: entry -> index into `backends`. Backends of
/// weight 0 get no entries; with no backend of positive weight the table is
/// empty (the VIP has nowhere to send new flows).
pub fn build(backends: &[Backend], size: u32) -> Result<Vec<u32>, MaglevError> {
    if !is_prime(size) || size < 3 {
        return Err(MaglevError::SizeNotPrime(size));
    }
    if backends.len() > BACKENDS_MAX {
        return Err(MaglevError::TooManyBackends(backends.len()));
    }
    if backends.len() * 100 > size as usize {
        return Err(MaglevError::TooSmall {
            size,
            backends: backends.len(),
        });
    }
    let mut names = std::collections::HashSet::new();
    for b in backends {
        if b.weight > WEIGHT_MAX {
            return Err(MaglevError::WeightTooLarge {
                name: b.name.clone(),
                weight: b.weight,
            });
        }
        if !names.insert(b.name.as_str()) {
            return Err(MaglevError::Duplicate(b.name.clone()));
        }
    }
    let live: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weight > 0)
        .collect();
    if live.is_empty() {
        return Ok(Vec::new());
    }
    let m = u64::from(size);
    let offsets: Vec<u64> = live
        .iter()
        .map(|&i| xxh3_64_with_seed(backends[i].name.as_bytes(), SEED_OFFSET) % m)
        .collect();
    let skips: Vec<u64> = live
        .iter()
        .map(|&i| xxh3_64_with_seed(backends[i].name.as_bytes(), SEED_SKIP) % (m - 1) + 1)
        .collect();
    let weight_max = live.iter().map(|&i| backends[i].weight).max().unwrap_or(1);
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u32;
    'fill: loop {
        for (k, &i) in live.iter().enumerate() {
            // Weighted turns: a backend claims an entry each time its
            // accumulated weight reaches the largest weight.
            credit[k] += u64::from(backends[i].weight);
            while credit[k] >= u64::from(weight_max) {
                credit[k] -= u64::from(weight_max);
                let mut c = (offsets[k] + next[k] * skips[k]) % m;
                while table[c as usize] != u32::MAX {
                    next[k] += 1;
                    c = (offsets[k] + next[k] * skips[k]) % m;
                }
                table[c as usize] = i as u32;
                next[k] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Backend> {
        (0..n)
            .map(|i| Backend {
                name: format!("10.0.{}.{}:80", i / 250, i % 250 + 1),
                weight: 1,
            })
            .collect()
    }

    fn shares(table: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        table.iter().for_each(|&b| counts[b as usize] += 1);
        counts
            .iter()
            .map(|&c| c as f64 / table.len() as f64)
            .collect()
    }

    #[test]
    fn every_backend_gets_its_share_within_one_percent() {
        for n in [2, 3, 7, 10, 50, 100] {
            let table = build(&pool(n), TABLE_SIZE_DEFAULT).unwrap();
            assert!(table.iter().all(|&b| (b as usize) < n));
            let want = 1.0 / n as f64;
            for (i, share) in shares(&table, n).into_iter().enumerate() {
                assert!(
                    (share - want).abs() <= 0.01 * want,
                    "n={n} backend {i}: share {share:.5}, want {want:.5}"
                );
            }
        }
    }

    #[test]
    fn removing_one_backend_moves_about_one_nth_of_the_flows() {
        for n in [3, 10, 50] {
            let all = pool(n);
            let before = build(&all, TABLE_SIZE_DEFAULT).unwrap();
            let removed = n / 2;
            let rest: Vec<Backend> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != removed)
                .map(|(_, b)| b.clone())
                .collect();
            let after = build(&rest, TABLE_SIZE_DEFAULT).unwrap();
            // Map indexes of `rest` back to names of `all`.
            let name_after = |e: usize| &rest[after[e] as usize].name;
            let moved = (0..before.len())
                .filter(|&e| all[before[e] as usize].name != *name_after(e))
                .count() as f64
                / before.len() as f64;
            let had = 1.0 / n as f64;
            // The removed backend's flows must move; Maglev moves a little more.
            assert!(moved >= had * 0.99, "n={n}: moved {moved:.4} < {had:.4}");
            assert!(
                moved <= had * 1.5,
                "n={n}: moved {moved:.4}, want about {had:.4}"
            );
        }
    }

    #[test]
    fn weights_are_respected() {
        let backends = vec![
            Backend {
                name: "a:80".into(),
                weight: 1,
            },
            Backend {
                name: "b:80".into(),
                weight: 2,
            },
            Backend {
                name: "c:80".into(),
                weight: 5,
            },
            Backend {
                name: "drained:80".into(),
                weight: 0,
            },
        ];
        let table = build(&backends, TABLE_SIZE_DEFAULT).unwrap();
        let s = shares(&table, 4);
        for (i, want) in [(0, 1.0 / 8.0), (1, 2.0 / 8.0), (2, 5.0 / 8.0), (3, 0.0)] {
            assert!(
                (s[i] - want).abs() <= 0.01 * want.max(1e-9) + 1e-12,
                "backend {i}: share {:.5}, want {want:.5}",
                s[i]
            );
        }
    }

    #[test]
    fn bad_pools_are_refused() {
        assert_eq!(
            build(&pool(2), 65_536),
            Err(MaglevError::SizeNotPrime(65_536))
        );
        assert!(matches!(
            build(&pool(700), TABLE_SIZE_DEFAULT),
            Err(MaglevError::TooSmall { .. })
        ));
        let mut dup = pool(2);
        dup[1].name = dup[0].name.clone();
        assert!(matches!(
            build(&dup, TABLE_SIZE_DEFAULT),
            Err(MaglevError::Duplicate(_))
        ));
        assert_eq!(build(&[], TABLE_SIZE_DEFAULT), Ok(Vec::new()));
    }

    #[test]
    fn the_table_is_the_same_in_every_build() {
        // Every node (and every version) must build the same table from the
        // same pool, or flows would change backend when an agent restarts.
        let a = build(&pool(5), 1009).unwrap();
        assert_eq!(a, build(&pool(5), 1009).unwrap());
        assert_eq!(&a[..12], &[1, 3, 0, 3, 1, 4, 1, 0, 3, 4, 0, 3]);
    }
}
