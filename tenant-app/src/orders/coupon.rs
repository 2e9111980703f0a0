//! Coupon codes: 100 random bits from the operating system's generator, in the form
//! `timedeal_api::coupon` defines. Guessing one of 100 codes takes about 2^93 tries.

use rand::{rngs::OsRng, RngCore};

/// A fresh, unguessable code such as `7K2M-QX9P-0RTD-V4HN-C8ZE`.
pub fn new_code() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    timedeal_api::coupon::from_bits(u128::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_codes_are_all_different_and_well_formed() {
        let codes: std::collections::HashSet<String> = (0..10_000).map(|_| new_code()).collect();
        assert_eq!(codes.len(), 10_000);
        for code in codes.iter().take(100) {
            assert_eq!(
                timedeal_api::coupon::normalize(code).as_deref(),
                Some(code.as_str())
            );
        }
    }
}
