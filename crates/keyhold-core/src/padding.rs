//! Padmé padding (Nikitin et al., "Reducing Metadata Leakage from Encrypted
//! Files and Communication with PURBs", PETS 2019). A length L is rounded up
//! so that only its top ~log2(log2 L) + 1 bits remain significant: at most
//! 12% overhead, and the server learns only O(log log L) bits of L.

/// The padded length for an unpadded length `len` (never smaller than `len`).
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len)
    let s = 64 - u64::from(e.leading_zeros()); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::padme;

    #[test]
    fn matches_the_papers_examples() {
        // Values from the reference implementation in the PURBs paper.
        assert_eq!(padme(0), 0);
        assert_eq!(padme(1), 1);
        assert_eq!(padme(9), 10);
        assert_eq!(padme(100), 104);
        assert_eq!(padme(1000), 1024);
        assert_eq!(padme(1_000_000), 1_015_808);
    }

    #[test]
    fn never_shrinks_and_overhead_is_bounded() {
        for len in (1u64..200_000).step_by(7).chain([u64::from(u32::MAX), 1 << 40]) {
            let p = padme(len);
            assert!(p >= len);
            assert!((p - len) * 100 <= len * 12 + 100, "{len} -> {p}");
            assert_eq!(padme(p), p, "padded lengths are fixed points");
        }
    }
}
