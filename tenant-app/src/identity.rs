//! Who the shopper is. By default an anonymous shopper, known by a signed session token (a
//! cookie for browsers, or the `X-Timedeal-Session` header for apps); when the deal says so, a
//! JWT issued by the company, which names the shopper and may carry their per-user limit.

use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use timedeal_api::{JwtAlgorithm, JwtAuth, ShopperAuthMode};
use tokio::sync::RwLock;

use base64::Engine;

use crate::{error::Error, tokens::Signer};

pub const SESSION_COOKIE: &str = "td_session";
pub const SESSION_HEADER: &str = "x-timedeal-session";

/// The shopper behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shopper {
    pub id: String,
    /// The most this shopper may own: the deal's per-user limit, or the JWT's when it has one.
    pub limit: u32,
    /// A session token issued with this request, to be handed to the client.
    pub new_session: Option<String>,
}

/// Why a request has no shopper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("sign in first: this deal needs a bearer token from {issuer}")]
    Missing { issuer: String },
    #[error("the bearer token was refused: {0}")]
    Invalid(String),
}

/// How shoppers are identified for one deal.
pub enum Identifier {
    Anonymous,
    Jwt(Box<JwtVerifier>),
}

pub struct JwtVerifier {
    settings: JwtAuth,
    keys: Keys,
}

enum Keys {
    Fixed(DecodingKey),
    Jwks {
        url: String,
        client: reqwest::Client,
        cache: RwLock<Option<(Instant, JwkSet)>>,
    },
}

/// How long fetched JWKS keys are trusted before they are fetched again.
const JWKS_REFRESH: Duration = Duration::from_secs(300);

impl Identifier {
    pub fn new(
        auth: Option<&timedeal_api::ShopperAuth>,
        key: Option<&[u8]>,
    ) -> Result<Self, Error> {
        let Some(auth) = auth.filter(|a| a.mode == ShopperAuthMode::Jwt) else {
            return Ok(Identifier::Anonymous);
        };
        let jwt = auth.jwt.clone().ok_or_else(|| {
            Error::Config("shopperAuth.mode is Jwt but shopperAuth.jwt is missing".into())
        })?;
        let keys = match (&jwt.jwks_url, key) {
            (Some(url), _) => Keys::Jwks {
                url: url.clone(),
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| Error::Config(format!("cannot build the JWKS client: {e}")))?,
                cache: RwLock::new(None),
            },
            (None, Some(key)) => Keys::Fixed(match jwt.algorithm {
                JwtAlgorithm::HS256 => DecodingKey::from_secret(key),
                JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(key).map_err(|e| {
                    Error::Config(format!(
                        "--jwt-key-file is not an RSA public key in PEM form: {e}"
                    ))
                })?,
            }),
            (None, None) => return Err(Error::Config(
                "the deal's JWT settings name no key: set shopperAuth.jwt.jwksUrl or keySecretRef"
                    .into(),
            )),
        };
        Ok(Identifier::Jwt(Box::new(JwtVerifier {
            settings: jwt,
            keys,
        })))
    }

    /// The shopper behind these headers. Anonymous shoppers without a valid session get a new
    /// one; JWT deals refuse requests without a valid token.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        signer: &Signer,
        deal_limit: u32,
    ) -> Result<Shopper, AuthError> {
        match self {
            Identifier::Anonymous => {
                let existing = session_token(headers).and_then(|t| signer.session_id(&t).ok());
                Ok(match existing {
                    Some(id) => Shopper {
                        id,
                        limit: deal_limit,
                        new_session: None,
                    },
                    None => {
                        let (id, token) = signer.new_session();
                        Shopper {
                            id,
                            limit: deal_limit,
                            new_session: Some(token),
                        }
                    }
                })
            }
            Identifier::Jwt(verifier) => verifier.identify(headers, deal_limit).await,
        }
    }
}

/// Who a request says it comes from, no signature checked (see [`Identifier::claimed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// No session, or one that names nobody: the request would be a new shopper's.
    Nobody,
    /// The shopper the session or sign-in names, if its signature holds.
    Shopper(String),
}

impl Identifier {
    /// Who a request claims to be, read without checking a signature, so that an answer that is
    /// the same for everyone but a few known shoppers (the sold-out answer) is decided at the
    /// cost of a lookup. `None`: the request cannot say (no sign-in where one is needed); it
    /// takes the whole path.
    pub fn claimed(&self, headers: &HeaderMap) -> Option<Claimed> {
        match self {
            // A session that does not open is replaced by a new one: a new shopper.
            Identifier::Anonymous => Some(
                session_token(headers)
                    .and_then(|token| Signer::unchecked_session_id(&token))
                    .map_or(Claimed::Nobody, Claimed::Shopper),
            ),
            Identifier::Jwt(verifier) => {
                let token = bearer(headers)?;
                let payload = token.split('.').nth(1)?;
                let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload.trim_end_matches('='))
                    .ok()?;
                let claims: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&payload).ok()?;
                jwt_shopper_id(&claims, &verifier.settings.user_claim).map(Claimed::Shopper)
            }
        }
    }
}

/// The shopper id a company's sign-in names: its user claim, a non-empty string or a number,
/// prefixed so that it never meets an anonymous id. The one rule for checked and claimed ids.
fn jwt_shopper_id(
    claims: &serde_json::Map<String, serde_json::Value>,
    user_claim: &str,
) -> Option<String> {
    match claims.get(user_claim)? {
        serde_json::Value::String(s) if !s.is_empty() => Some(format!("jwt-{s}")),
        serde_json::Value::Number(n) => Some(format!("jwt-{n}")),
        _ => None,
    }
}

/// The company's sign-in token: the bearer header, else the `td_jwt` cookie.
fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| cookie(headers, "td_jwt"))
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value.to_owned());
    }
    cookie(headers, SESSION_COOKIE)
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

impl JwtVerifier {
    async fn identify(&self, headers: &HeaderMap, deal_limit: u32) -> Result<Shopper, AuthError> {
        let token = bearer(headers).ok_or_else(|| AuthError::Missing {
            issuer: self.settings.issuer.clone(),
        })?;
        let algorithm = match self.settings.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        let key = self.key_for(&token).await?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            &token,
            &key,
            &validation,
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let Some(id) = jwt_shopper_id(&data.claims, &self.settings.user_claim) else {
            return Err(AuthError::Invalid(format!(
                "the token has no {:?} claim naming the shopper",
                self.settings.user_claim
            )));
        };
        let limit = match &self.settings.limit_claim {
            Some(claim) => match data.claims.get(claim) {
                None => deal_limit,
                Some(value) => value
                    .as_u64()
                    .filter(|n| (1..=10_000).contains(n))
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        AuthError::Invalid(format!(
                            "the {claim:?} claim must be a whole number from 1 to 10000"
                        ))
                    })?,
            },
            None => deal_limit,
        };
        Ok(Shopper {
            id,
            limit,
            new_session: None,
        })
    }

    async fn key_for(&self, token: &str) -> Result<DecodingKey, AuthError> {
        match &self.keys {
            Keys::Fixed(key) => Ok(key.clone()),
            Keys::Jwks { url, client, cache } => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| AuthError::Invalid(e.to_string()))?;
                let find = |set: &JwkSet| match &header.kid {
                    Some(kid) => set.find(kid).cloned(),
                    None => set.keys.first().cloned(),
                };
                if let Some((fetched, set)) = cache.read().await.as_ref() {
                    if fetched.elapsed() < JWKS_REFRESH {
                        if let Some(jwk) = find(set) {
                            return DecodingKey::from_jwk(&jwk)
                                .map_err(|e| AuthError::Invalid(e.to_string()));
                        }
                    }
                }
                // Unknown key id or stale cache: the issuer may have rotated its keys.
                let set: JwkSet = client
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| AuthError::Invalid(format!("cannot fetch the JWKS: {e}")))?
                    .json()
                    .await
                    .map_err(|e| AuthError::Invalid(format!("the JWKS is not valid: {e}")))?;
                let jwk = find(&set).ok_or_else(|| {
                    AuthError::Invalid("the token's key is not in the issuer's JWKS".into())
                })?;
                *cache.write().await = Some((Instant::now(), set));
                DecodingKey::from_jwk(&jwk).map_err(|e| AuthError::Invalid(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; td_session=abc.def; lang=en"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc.def"));
        headers.insert(SESSION_HEADER, HeaderValue::from_static("xyz.uvw"));
        assert_eq!(session_token(&headers).as_deref(), Some("xyz.uvw"));
    }

    #[tokio::test]
    async fn a_claimed_identity_is_the_one_a_checked_session_would_give() {
        let signer = Signer::new(&[7; 32]);
        let identifier = Identifier::Anonymous;
        let shopper = identifier
            .identify(&HeaderMap::new(), &signer, 2)
            .await
            .unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(identifier.claimed(&headers), Some(Claimed::Nobody));
        let token = shopper.new_session.unwrap();
        headers.insert(SESSION_HEADER, HeaderValue::from_str(&token).unwrap());
        assert_eq!(
            identifier.claimed(&headers),
            Some(Claimed::Shopper(shopper.id.clone()))
        );
        // A forged signature still names its shopper: the claim only ever routes a request to
        // the checked path, which refuses it there.
        let forged = format!("{}.AAAA", token.split_once('.').unwrap().0);
        headers.insert(SESSION_HEADER, HeaderValue::from_str(&forged).unwrap());
        assert_eq!(
            identifier.claimed(&headers),
            Some(Claimed::Shopper(shopper.id))
        );
        headers.insert(SESSION_HEADER, HeaderValue::from_static("not a token"));
        assert_eq!(identifier.claimed(&headers), Some(Claimed::Nobody));
    }

    #[tokio::test]
    async fn an_anonymous_shopper_keeps_their_session() {
        let signer = Signer::new(&[7; 32]);
        let identifier = Identifier::Anonymous;
        let first = identifier
            .identify(&HeaderMap::new(), &signer, 2)
            .await
            .unwrap();
        let token = first.new_session.clone().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(SESSION_HEADER, HeaderValue::from_str(&token).unwrap());
        let again = identifier.identify(&headers, &signer, 2).await.unwrap();
        assert_eq!(again.id, first.id);
        assert_eq!(again.new_session, None);
    }

    #[tokio::test]
    async fn a_forged_session_gets_a_new_identity() {
        let signer = Signer::new(&[7; 32]);
        let mut headers = HeaderMap::new();
        headers.insert(
            SESSION_HEADER,
            HeaderValue::from_static("YW5vbi14.Zm9yZ2Vk"),
        );
        let shopper = Identifier::Anonymous
            .identify(&headers, &signer, 2)
            .await
            .unwrap();
        assert_ne!(shopper.id, "anon-x");
        assert!(shopper.new_session.is_some());
    }

    fn hs256(limit_claim: Option<&str>) -> Identifier {
        let auth = timedeal_api::ShopperAuth {
            mode: ShopperAuthMode::Jwt,
            jwt: Some(JwtAuth {
                issuer: "https://id.acme.example".into(),
                audience: "deals".into(),
                algorithm: JwtAlgorithm::HS256,
                jwks_url: None,
                key_secret_ref: Some(timedeal_api::SecretKeyRef {
                    name: "acme-jwt".into(),
                    key: "secret".into(),
                }),
                user_claim: "sub".into(),
                limit_claim: limit_claim.map(str::to_owned),
            }),
        };
        Identifier::new(Some(&auth), Some(b"company-secret-company-secret-00")).unwrap()
    }

    fn bearer(claims: serde_json::Value, key: &[u8]) -> HeaderMap {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    fn claims(extra: serde_json::Value) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "iss": "https://id.acme.example",
            "aud": "deals",
            "sub": "customer-42",
            "exp": chrono::Utc::now().timestamp() + 600,
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    #[test]
    fn a_company_jwt_claims_its_subject_and_no_token_claims_nothing() {
        let identifier = hs256(None);
        let signed = bearer(
            claims(serde_json::json!({})),
            b"company-secret-company-secret-00",
        );
        assert_eq!(
            identifier.claimed(&signed),
            Some(Claimed::Shopper("jwt-customer-42".into()))
        );
        assert_eq!(identifier.claimed(&HeaderMap::new()), None);
        let numbered = bearer(claims(serde_json::json!({"sub": 42})), b"any key");
        assert_eq!(
            identifier.claimed(&numbered),
            Some(Claimed::Shopper("jwt-42".into()))
        );
    }

    /// The claimed id is the id the checked sign-in gives: the buyers' list holds checked ids.
    #[tokio::test]
    async fn a_company_jwt_claims_the_id_its_check_gives() {
        let identifier = hs256(None);
        let signed = bearer(
            claims(serde_json::json!({})),
            b"company-secret-company-secret-00",
        );
        let checked = identifier
            .identify(&signed, &Signer::new(&[7; 32]), 2)
            .await
            .unwrap();
        assert_eq!(
            identifier.claimed(&signed),
            Some(Claimed::Shopper(checked.id))
        );
    }

    #[tokio::test]
    async fn a_company_jwt_names_the_shopper_and_their_limit() {
        let signer = Signer::new(&[7; 32]);
        let key = b"company-secret-company-secret-00";
        let shopper = hs256(Some("maxQty"))
            .identify(
                &bearer(claims(serde_json::json!({"maxQty": 5})), key),
                &signer,
                2,
            )
            .await
            .unwrap();
        assert_eq!(shopper.id, "jwt-customer-42");
        assert_eq!(shopper.limit, 5);
        let plain = hs256(None)
            .identify(&bearer(claims(serde_json::json!({})), key), &signer, 2)
            .await
            .unwrap();
        assert_eq!(plain.limit, 2);
    }

    #[tokio::test]
    async fn bad_jwts_are_refused() {
        let signer = Signer::new(&[7; 32]);
        let key = b"company-secret-company-secret-00";
        let identifier = hs256(None);
        assert!(matches!(
            identifier.identify(&HeaderMap::new(), &signer, 2).await,
            Err(AuthError::Missing { .. })
        ));
        let wrong_key = bearer(
            claims(serde_json::json!({})),
            b"another-secret-another-secret-00",
        );
        assert!(matches!(
            identifier.identify(&wrong_key, &signer, 2).await,
            Err(AuthError::Invalid(_))
        ));
        let wrong_audience = bearer(claims(serde_json::json!({"aud": "other"})), key);
        assert!(matches!(
            identifier.identify(&wrong_audience, &signer, 2).await,
            Err(AuthError::Invalid(_))
        ));
        let expired = bearer(claims(serde_json::json!({"exp": 1000})), key);
        assert!(matches!(
            identifier.identify(&expired, &signer, 2).await,
            Err(AuthError::Invalid(_))
        ));
    }

    /// A fresh RSA key pair from the openssl command: the private PEM, the public PEM, and the
    /// modulus in base64url (the JWK `n`).
    fn rsa_key() -> (Vec<u8>, Vec<u8>, String) {
        use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl is installed by `make setup`");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            output.stdout
        };
        let key_path = key.to_str().unwrap();
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key_path,
        ]);
        let public = openssl(&["rsa", "-in", key_path, "-pubout"]);
        let modulus =
            String::from_utf8(openssl(&["rsa", "-in", key_path, "-noout", "-modulus"])).unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        (
            std::fs::read(&key).unwrap(),
            public,
            URL_SAFE_NO_PAD.encode(bytes),
        )
    }

    fn rs256_auth(jwks_url: Option<String>) -> timedeal_api::ShopperAuth {
        timedeal_api::ShopperAuth {
            mode: ShopperAuthMode::Jwt,
            jwt: Some(JwtAuth {
                issuer: "https://id.acme.example".into(),
                audience: "deals".into(),
                algorithm: JwtAlgorithm::RS256,
                key_secret_ref: jwks_url.is_none().then(|| timedeal_api::SecretKeyRef {
                    name: "acme-jwt".into(),
                    key: "public.pem".into(),
                }),
                jwks_url,
                user_claim: "sub".into(),
                limit_claim: None,
            }),
        }
    }

    fn rs256_bearer(private: &[u8], kid: &str) -> HeaderMap {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_rsa_pem(private).unwrap(),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn rs256_tokens_verify_with_a_pem_key_or_the_issuers_jwks() {
        let signer = Signer::new(&[7; 32]);
        let (private, public, n) = rsa_key();
        let (other_private, _, _) = rsa_key();

        let with_pem = Identifier::new(Some(&rs256_auth(None)), Some(&public)).unwrap();
        let shopper = with_pem
            .identify(&rs256_bearer(&private, "k1"), &signer, 1)
            .await
            .unwrap();
        assert_eq!(shopper.id, "jwt-customer-42");
        assert!(matches!(
            with_pem
                .identify(&rs256_bearer(&other_private, "k1"), &signer, 1)
                .await,
            Err(AuthError::Invalid(_))
        ));

        let jwks = serde_json::json!({"keys": [{
            "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"
        }]});
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || async move { axum::Json(jwks.clone()) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let with_jwks = Identifier::new(Some(&rs256_auth(Some(url))), None).unwrap();
        let shopper = with_jwks
            .identify(&rs256_bearer(&private, "k1"), &signer, 1)
            .await
            .unwrap();
        assert_eq!(shopper.id, "jwt-customer-42");
        // A key id the issuer does not publish, and a token signed with another key.
        assert!(matches!(
            with_jwks.identify(&rs256_bearer(&private, "k2"), &signer, 1).await,
            Err(AuthError::Invalid(message)) if message.contains("not in the issuer's JWKS")
        ));
        assert!(matches!(
            with_jwks
                .identify(&rs256_bearer(&other_private, "k1"), &signer, 1)
                .await,
            Err(AuthError::Invalid(_))
        ));
    }
}
