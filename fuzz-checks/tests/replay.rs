//! The fuzz targets in the ordinary test run: every committed corpus file
//! (`fuzz/corpus/<target>/`) goes through its target's check, then seeded
//! mutations of the corpus (byte flips, inserts, deletes, splices) for a
//! bounded number of rounds and time. No coverage guidance and no
//! sanitizer: this keeps the corpora from rotting and catches regressions
//! the long cargo-fuzz runs found once; it is not a substitute for them.
//! A failure prints the target, the seed, the round and where the input was
//! written.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use photon_fuzz_checks::TARGETS;

/// Fixed, so a failure reproduces; `PHOTON_FUZZ_SEED` picks another.
const SEED_DEFAULT: u64 = 0x5eed_f022;
const MUTATIONS_MAX: u64 = 20_000;
const TIME_PER_TARGET: Duration = Duration::from_secs(3);
const INPUT_BYTES_MAX: usize = 64 * 1024;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(corpus_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !input.is_empty() => {
                let at = rng.below(input.len());
                input[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(input.len() + 1);
                let byte = [0u8, 0xff, b'<', b'>', b'\n', b':', b'0', b'9'][rng.below(8)];
                input.insert(
                    at,
                    if rng.below(2) == 0 {
                        byte
                    } else {
                        rng.next() as u8
                    },
                );
            }
            2 if !input.is_empty() => {
                let at = rng.below(input.len());
                let n = 1 + rng.below(16.min(input.len() - at));
                input.drain(at..at + n);
            }
            3 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = 1 + rng.below(other.len() - from);
                let at = rng.below(input.len() + 1);
                input.splice(at..at, other[from..from + n].iter().copied());
            }
            _ => {
                let at = rng.below(input.len() + 1);
                let n = rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
        }
    }
    input.truncate(INPUT_BYTES_MAX);
}

fn run(target: &str, check: fn(&[u8]), input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
        let path = std::env::temp_dir().join(format!("photon-fuzz-{target}-failure"));
        let _ = std::fs::write(&path, input);
        panic!(
            "fuzz target {target} failed on {what}; the input is in {} \
             (reproduce: cargo +nightly fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
}

#[test]
fn every_corpus_replays_and_survives_seeded_mutations() {
    let seed = std::env::var("PHOTON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED_DEFAULT);
    for &(target, check) in TARGETS {
        let files = corpus(target);
        for (path, bytes) in &files {
            run(
                target,
                check,
                bytes,
                &format!("corpus file {}", path.display()),
            );
        }
        let inputs: Vec<&[u8]> = if files.is_empty() {
            vec![&[]]
        } else {
            files.iter().map(|(_, b)| b.as_slice()).collect()
        };
        let mut rng = Rng(seed ^ target.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        let started = Instant::now();
        let mut round = 0;
        while round < MUTATIONS_MAX && started.elapsed() < TIME_PER_TARGET {
            let mut input = inputs[rng.below(inputs.len())].to_vec();
            let other = inputs[rng.below(inputs.len())];
            mutate(&mut rng, &mut input, other);
            run(
                target,
                check,
                &input,
                &format!("seed {seed}, round {round}"),
            );
            round += 1;
        }
        eprintln!(
            "{target}: {} corpus files, {round} mutations (seed {seed})",
            files.len()
        );
    }
}
