//! The key the portal signs its session cookies with: an HMAC over the cookie's parts, so a
//! forged or altered cookie is refused before the database is asked. The key comes from the
//! Secret `timedeal-portal`, which the operator generates; it is never logged.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, String> {
        let key = key.into();
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "the portal's signing key must be at least {MIN_KEY_LEN} bytes long"
            ));
        }
        Ok(Self(key))
    }

    fn mac(&self, parts: &[&str]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Lengths first, so ("a", "bc") and ("ab", "c") never sign alike.
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    pub fn sign(&self, parts: &[&str]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(parts).finalize().into_bytes())
    }

    /// Constant-time check of a signature.
    pub fn verify(&self, parts: &[&str], signature: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(signature) {
            Ok(bytes) => self.mac(parts).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn a_signature_holds_only_for_its_own_parts_and_key() {
        let key = key();
        let signature = key.sign(&["session", "token-1"]);
        assert!(key.verify(&["session", "token-1"], &signature));
        assert!(!key.verify(&["session", "token-2"], &signature));
        assert!(!key.verify(&["sessio", "ntoken-1"], &signature));
        let mut tampered = signature.clone();
        tampered.replace_range(0..1, if signature.starts_with('A') { "B" } else { "A" });
        assert!(!key.verify(&["session", "token-1"], &tampered));
        assert!(!key.verify(&["session", "token-1"], "not base64!"));
        let other = SigningKey::new(vec![7u8; 32]).unwrap();
        assert!(!other.verify(&["session", "token-1"], &signature));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(SigningKey::new(b"short".to_vec()).is_err());
    }
}
