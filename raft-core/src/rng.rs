//! A small seeded generator for election timeouts.
//!
//! The core must give the same outputs for the same inputs on every platform and every version of
//! every dependency, or a failing seed would stop reproducing its failure. SplitMix64 is fixed by its
//! definition, so it is written here rather than taken from a crate whose stream may change.

/// SplitMix64 (Steele, Lea and Flood, 2014): fast, with good statistical quality for this use.
#[derive(Clone, Debug)]
pub(crate) struct SeededRng {
    state: u64,
}

impl SeededRng {
    pub(crate) fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[low, high)`; `high` must exceed `low`.
    pub(crate) fn in_range(&mut self, low: u32, high: u32) -> u32 {
        debug_assert!(high > low);
        let span = u64::from(high - low);
        low + (self.next_u64() % span) as u32
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
