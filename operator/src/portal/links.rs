//! Unguessable status links: `/requests/<namespace>/<name>/<signature>`, the signature an HMAC
//! of the deal's namespace, name and uid under a key only the operator holds. A deal deleted and
//! made again under the same name has a new uid, so an old link does not open it.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct LinkKey(Vec<u8>);

impl LinkKey {
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, String> {
        let key = key.into();
        if key.len() < MIN_KEY_LEN {
            return Err(format!(
                "the status link key must be at least {MIN_KEY_LEN} bytes long"
            ));
        }
        Ok(Self(key))
    }

    fn mac(&self, namespace: &str, name: &str, uid: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        // Lengths first, so ("a", "bc") and ("ab", "c") never sign alike.
        for part in [namespace, name, uid] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    pub fn sign(&self, namespace: &str, name: &str, uid: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(namespace, name, uid).finalize().into_bytes())
    }

    /// Constant-time check of a signature from a link.
    pub fn verify(&self, namespace: &str, name: &str, uid: &str, signature: &str) -> bool {
        match URL_SAFE_NO_PAD.decode(signature) {
            Ok(bytes) => self.mac(namespace, name, uid).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    pub fn path(&self, namespace: &str, name: &str, uid: &str) -> String {
        format!(
            "/requests/{namespace}/{name}/{}",
            self.sign(namespace, name, uid)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap()
    }

    #[test]
    fn a_link_opens_only_its_own_deal() {
        let key = key();
        let signature = key.sign("td-acme", "headphones-x1", "uid-1");
        assert!(key.verify("td-acme", "headphones-x1", "uid-1", &signature));
        assert!(!key.verify("td-acme", "headphones-x2", "uid-1", &signature));
        assert!(
            !key.verify("td-acme", "headphones-x1", "uid-2", &signature),
            "recreated deal"
        );
        assert!(!key.verify("td-acm", "eheadphones-x1", "uid-1", &signature));
        let mut tampered = signature.clone();
        tampered.replace_range(0..1, if signature.starts_with('A') { "B" } else { "A" });
        assert!(!key.verify("td-acme", "headphones-x1", "uid-1", &tampered));
        assert!(!key.verify("td-acme", "headphones-x1", "uid-1", "not base64!"));
        let other = LinkKey::new(vec![7u8; 32]).unwrap();
        assert!(!other.verify("td-acme", "headphones-x1", "uid-1", &signature));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(LinkKey::new(b"short".to_vec()).is_err());
    }
}
