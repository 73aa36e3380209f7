//! A small seeded generator for election timeouts, shared with simulators and fault injectors.
//!
//! The core must give the same outputs for the same inputs on every platform and every version of
//! every dependency, or a failing seed would stop reproducing its failure. SplitMix64 is fixed by its
//! definition, so it is written here rather than taken from a crate whose stream may change.

/// SplitMix64 (Steele, Lea and Flood, 2014): fast, with good statistical quality for this use.
///
/// ```
/// use raft_core::SeededRng;
/// let mut a = SeededRng::new(42);
/// let mut b = SeededRng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!((10..20).contains(&a.in_range(10, 20)));
/// ```
#[derive(Clone, Debug, Hash)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[low, high)`; `high` must exceed `low`.
    pub fn in_range(&mut self, low: u32, high: u32) -> u32 {
        debug_assert!(high > low);
        let span = u64::from(high - low);
        low + (self.next_u64() % span) as u32
    }
}

impl SeededRng {
    /// A value in `[0, bound)`; `bound` must not be 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        self.next_u64() % bound
    }

    /// True with probability `p` (0 never, 1 always).
    pub fn chance(&mut self, p: f64) -> bool {
        let uniform = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        uniform < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_same_stream() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn in_range_stays_in_range() {
        let mut rng = SeededRng::new(1);
        for _ in 0..1000 {
            let v = rng.in_range(10, 20);
            assert!((10..20).contains(&v));
        }
    }
}
