//! Fresh identifiers (request ids, extension ids, event ids, trace ids)
//! without a system call each.
//!
//! `uuid::Uuid::new_v4` asks the kernel for randomness on every call (one
//! `getrandom` per id, four per invoke). These ids only need to be unique
//! and unpredictable enough for a local environment, not secret, so a
//! SplitMix64 sequence seeded once from the kernel is enough: it is what
//! the invoke hot path uses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The generator's state: a Weyl sequence stepped atomically, so ids can
/// be made from any task or thread without a lock.
static STATE: OnceLock<AtomicU64> = OnceLock::new();

fn next_u64() -> u64 {
    let state = STATE.get_or_init(|| {
        // One kernel-random seed per process.
        let seed = uuid::Uuid::new_v4().as_u64_pair();
        AtomicU64::new(seed.0 ^ seed.1.rotate_left(32))
    });
    // SplitMix64: the increment is the golden-ratio constant; the mix is
    // a bijection, so distinct states give distinct outputs.
    let mut z = state
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) UUID.
pub(crate) fn uuid() -> uuid::Uuid {
    let hi = next_u64().to_be_bytes();
    let lo = next_u64().to_be_bytes();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi);
    bytes[8..].copy_from_slice(&lo);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// `n` random lowercase hex digits (at most 32).
pub(crate) fn hex(n: usize) -> String {
    let mut s = uuid().simple().to_string();
    s.truncate(n.min(32));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_v4_and_distinct() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| uuid()).collect();
        assert_eq!(ids.len(), 10_000);
        let one = uuid();
        assert_eq!(one.get_version_num(), 4);
        assert_eq!(hex(24).len(), 24);
        assert!(hex(16).chars().all(|c| c.is_ascii_hexdigit()));
    }
}
