//! Stable, fast, non-cryptographic hashing for request keys and endpoint ids.
//!
//! The output is the same on every platform and every run (no per-process
//! seed), because consistent hashing must map a key to the same endpoint on
//! every proxy instance. It is not collision resistant against an adversary;
//! it only needs to spread keys evenly.

const P1: u64 = 0x9E37_79B9_7F4A_7C15;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const SEED: u64 = 0x2545_F491_4F6C_DD1D;

/// Mixes the bits of a 64-bit value so that every input bit affects every
/// output bit (the finaliser of MurmurHash3, `fmix64`).
///
/// Use it to turn a raw number that is not already well spread (an IPv4
/// address, a counter) into a hash.
#[inline]
pub const fn hash_u64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    x
}

/// Hashes a byte string to 64 bits: stable across platforms and runs, fast
/// (8 bytes per step), well mixed.
///
/// ```
/// use smartlb_balance::hash_bytes;
/// assert_eq!(hash_bytes(b"user-42"), hash_bytes(b"user-42"));
/// assert_ne!(hash_bytes(b"user-42"), hash_bytes(b"user-43"));
/// ```
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = SEED ^ (bytes.len() as u64).wrapping_mul(P1);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = step(h, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        // The length is already mixed into the seed, so zero padding is unambiguous.
        h = step(h, u64::from_le_bytes(word));
    }
    hash_u64(h)
}

#[inline]
fn step(h: u64, word: u64) -> u64 {
    let m = (word ^ P2).wrapping_mul(P1);
    (h ^ m ^ (m >> 29)).rotate_left(27).wrapping_mul(P1)
}

/// Maps a 64-bit hash uniformly onto `0..n` with a multiply-shift (no division).
#[inline]
pub(crate) fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn stable_values() {
        // Pinned so that an accidental change of the function (which would
        // remap every consistent-hash key on upgrade) fails loudly.
        assert_eq!(hash_bytes(b""), 0xb800_bd6c_0247_2607);
        assert_eq!(hash_bytes(b"a"), 0x8f10_33d7_3f85_fe71);
        assert_eq!(hash_bytes(b"hello world!"), 0x8b5b_86e6_deb9_695d);
        assert_eq!(hash_bytes(b"10.0.0.1:8080"), 0xd73d_f1a0_f40d_387e);
        assert_eq!(hash_u64(1), 0xb456_bcfc_34c2_cb2c);
        assert_ne!(hash_bytes(b"a"), hash_bytes(b"a\0"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
    }

    #[test]
    fn few_collisions_and_even_spread() {
        let mut seen = HashSet::new();
        let mut buckets = [0u32; 16];
        for i in 0..20_000u32 {
            let h = hash_bytes(format!("key-{i}").as_bytes());
            seen.insert(h);
            buckets[reduce(h, 16)] += 1;
        }
        assert_eq!(seen.len(), 20_000);
        for b in buckets {
            // Expected 1250 per bucket; sigma is about 34.
            assert!((1050..1450).contains(&b), "bucket {b}");
        }
    }

    #[test]
    fn reduce_stays_in_range() {
        for h in [0, 1, u64::MAX, u64::MAX / 2] {
            assert!(reduce(h, 7) < 7);
        }
        assert_eq!(reduce(u64::MAX, 1), 0);
    }
}
