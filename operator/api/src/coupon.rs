//! The form of coupon codes, shared by the storefront that makes them and the portal that
//! redeems them: 100 bits in Crockford's base 32 (no I, L, O or U, so a code read aloud or typed
//! from a screen is not misread), as five groups of four.

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Characters in a code, without the dashes.
const LENGTH: usize = 20;

/// The code for 100 bits (the low 100 of `bits`), such as `7K2M-QX9P-0RTD-V4HN-C8ZE`.
pub fn from_bits(bits: u128) -> String {
    let mut code = String::with_capacity(LENGTH + 4);
    for i in 0..LENGTH {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        let index = (bits >> (5 * (LENGTH - 1 - i))) & 31;
        code.push(ALPHABET[index as usize] as char);
    }
    code
}

/// A code as a person typed it, in the form it is stored: capitals, dashes where they belong,
/// and the letters people mistake for digits read as those digits (O as 0, I and L as 1).
/// `None` when it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let mut plain = String::with_capacity(LENGTH);
    for c in typed.trim().chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        plain.push(c);
    }
    if plain.len() != LENGTH {
        return None;
    }
    let groups: Vec<&str> = (0..LENGTH / 4).map(|i| &plain[i * 4..i * 4 + 4]).collect();
    Some(groups.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_make_five_groups_of_four_that_read_back_as_themselves() {
        assert_eq!(from_bits(0), "0000-0000-0000-0000-0000");
        assert_eq!(
            from_bits(u128::MAX),
            "ZZZZ-ZZZZ-ZZZZ-ZZZZ-ZZZZ",
            "only 100 bits count"
        );
        let code = from_bits(0x0000_1234_5678_9abc_def0_1234_5678);
        assert_eq!(normalize(&code).as_deref(), Some(code.as_str()));
    }

    #[test]
    fn typed_codes_forgive_case_spaces_and_lookalikes() {
        assert_eq!(
            normalize(" 7k2m qx9p ortd v4hn c8ze ").as_deref(),
            Some("7K2M-QX9P-0RTD-V4HN-C8ZE")
        );
        assert_eq!(normalize("too-short"), None);
        assert_eq!(
            normalize("7K2M-QX9P-0RTD-V4HN-C8ZU"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalize("7K2M-QX9P-0RTD-V4HN-C8Zé"), None);
    }
}
