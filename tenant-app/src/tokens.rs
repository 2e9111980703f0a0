//! Signed tokens: the shopper's session id and the admission token. Both are HMAC-SHA256 over
//! their contents with the deal's signing secret, so any replica can check what another issued
//! and no shopper can make one up.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not in the expected form")]
    Malformed,
    #[error("the token's signature does not match; it was not issued by this deal")]
    Forged,
    #[error("the token has expired")]
    Expired,
    #[error("the token belongs to another shopper")]
    Foreign,
    #[error("the token belongs to another deal")]
    OtherDeal,
    #[error("the solution does not solve the challenge")]
    Unsolved,
}

/// What an admission token grants: the shopper may order in the deal until `expires_ms`, as long
/// as the admission of join number `nonce`, in Redis's `epoch`, is still live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub deal: String,
    pub shopper: String,
    pub epoch: i64,
    pub nonce: u64,
    pub expires_ms: i64,
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: secret.to_vec(),
        }
    }

    /// The MAC over `body`, keyed by the secret and separated by `purpose`, so a token made for
    /// one purpose is never accepted for another.
    fn mac(&self, purpose: &str, body: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(body.as_bytes());
        mac
    }

    pub(crate) fn sign(&self, purpose: &str, body: &str) -> String {
        format!(
            "{}.{}",
            B64.encode(body),
            B64.encode(self.mac(purpose, body).finalize().into_bytes())
        )
    }

    /// Returns the signed body, or why the token is not one this signer issued for `purpose`.
    pub(crate) fn open(&self, purpose: &str, token: &str) -> Result<String, TokenError> {
        let (body, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let body = String::from_utf8(B64.decode(body).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        // Constant-time comparison.
        self.mac(purpose, &body)
            .verify_slice(&signature)
            .map_err(|_| TokenError::Forged)?;
        Ok(body)
    }

    /// A new anonymous shopper: a random id and the signed session token carrying it.
    pub fn new_session(&self) -> (String, String) {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let id = format!("anon-{}", B64.encode(bytes));
        let token = self.sign("session", &id);
        (id, token)
    }

    /// The shopper id a session token names, its signature not checked: enough to tell that a
    /// request cannot come from a given shopper, never to act for one.
    pub fn unchecked_session_id(token: &str) -> Option<String> {
        let (body, _) = token.split_once('.')?;
        String::from_utf8(B64.decode(body).ok()?).ok()
    }

    /// The shopper id inside a session token.
    pub fn session_id(&self, token: &str) -> Result<String, TokenError> {
        self.open("session", token)
    }

    pub fn admission_token(&self, admission: &Admission) -> String {
        let body = format!(
            "{}|{}|{}|{}|{}",
            admission.deal,
            admission.shopper,
            admission.epoch,
            admission.nonce,
            admission.expires_ms
        );
        self.sign("admission", &body)
    }

    /// The shopper an admission token names, its signature not checked: enough to pass over a
    /// token that is not the request's own without computing a MAC.
    pub fn unchecked_admission_shopper(token: &str) -> Option<String> {
        let body = Self::unchecked_session_id(token)?;
        let mut parts = body.rsplitn(4, '|');
        let rest = parts.nth(3)?;
        rest.split_once('|').map(|(_, shopper)| shopper.to_owned())
    }

    /// Checks an admission token for this deal and shopper at `now_ms`.
    pub fn check_admission(
        &self,
        token: &str,
        deal: &str,
        shopper: &str,
        now_ms: i64,
    ) -> Result<Admission, TokenError> {
        let body = self.open("admission", token)?;
        let mut parts = body.rsplitn(4, '|');
        let expires_ms = parts.next().and_then(|s| s.parse().ok());
        let nonce = parts.next().and_then(|s| s.parse().ok());
        let epoch = parts.next().and_then(|s| s.parse().ok());
        let rest = parts.next();
        let (Some(expires_ms), Some(nonce), Some(epoch), Some(rest)) =
            (expires_ms, nonce, epoch, rest)
        else {
            return Err(TokenError::Malformed);
        };
        let (token_deal, token_shopper) = rest.split_once('|').ok_or(TokenError::Malformed)?;
        if token_deal != deal {
            return Err(TokenError::OtherDeal);
        }
        if token_shopper != shopper {
            return Err(TokenError::Foreign);
        }
        if expires_ms <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(Admission {
            deal: deal.to_owned(),
            shopper: shopper.to_owned(),
            epoch,
            nonce,
            expires_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Admission {
        Admission {
            deal: "winter-headphones".into(),
            shopper: "anon-abc".into(),
            epoch: 1,
            nonce: 7,
            expires_ms: 2_000,
        }
    }

    #[test]
    fn a_session_token_carries_its_id() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let (id, token) = signer.new_session();
        assert_eq!(signer.session_id(&token).unwrap(), id);
        let (other, _) = signer.new_session();
        assert_ne!(id, other);
    }

    #[test]
    fn a_session_token_from_another_secret_is_forged() {
        let ours = Signer::new(b"0123456789abcdef0123456789abcdef");
        let theirs = Signer::new(b"fedcba9876543210fedcba9876543210");
        let (_, token) = theirs.new_session();
        assert_eq!(ours.session_id(&token), Err(TokenError::Forged));
        assert_eq!(ours.session_id("no-dot"), Err(TokenError::Malformed));
    }

    #[test]
    fn a_session_token_is_not_an_admission_token() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.sign("session", "winter-headphones|anon-abc|1|7|2000");
        assert_eq!(
            signer.check_admission(&token, "winter-headphones", "anon-abc", 1_000),
            Err(TokenError::Forged)
        );
    }

    #[test]
    fn an_admission_token_is_checked_for_deal_shopper_and_time() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.admission_token(&admission());
        assert_eq!(
            signer.check_admission(&token, "winter-headphones", "anon-abc", 1_999),
            Ok(admission())
        );
        assert_eq!(
            signer.check_admission(&token, "winter-headphones", "anon-abc", 2_000),
            Err(TokenError::Expired)
        );
        assert_eq!(
            signer.check_admission(&token, "winter-headphones", "anon-xyz", 1_000),
            Err(TokenError::Foreign)
        );
        assert_eq!(
            signer.check_admission(&token, "summer-fans", "anon-abc", 1_000),
            Err(TokenError::OtherDeal)
        );
        assert_eq!(
            Signer::unchecked_admission_shopper(&token).as_deref(),
            Some("anon-abc")
        );
        assert_eq!(Signer::unchecked_admission_shopper("x.y"), None);
    }

    #[test]
    fn a_tampered_admission_token_is_forged() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.admission_token(&admission());
        let (_, signature) = token.split_once('.').unwrap();
        let longer = B64.encode("winter-headphones|anon-abc|1|7|9999999");
        assert_eq!(
            signer.check_admission(
                &format!("{longer}.{signature}"),
                "winter-headphones",
                "anon-abc",
                1_000
            ),
            Err(TokenError::Forged)
        );
    }
}
