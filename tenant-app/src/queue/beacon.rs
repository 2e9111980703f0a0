//! The public randomness that keys the draw together with the seed, so that nobody who can read
//! the seed before the start (an insider with database access) can work out which join numbers
//! get the first places: the permutation is keyed by `seed || randomness`, where `randomness` is
//! a beacon round emitted only after the pre-queue closed.
//!
//! The beacon is named before anyone can join: its URL is bound into the commitment,
//! `SHA-256(seed || url)`, and published in every queue status. The round is not chosen by
//! anyone: it is the first round the beacon emits strictly after the deal's start, when the
//! pre-queue closes. A beacon speaks drand's HTTP API: `<url>/info` gives `genesis_time` and
//! `period` (seconds), and round `r`, emitted at `genesis_time + (r - 1) * period`, is at
//! `<url>/public/<r>` with its `randomness` in hex. drand's signatures are not checked here;
//! `tenant-app verify-draw` fetches the round from the beacon itself and compares.
//!
//! Without a beacon (`--draw-beacon none`, for deals without outbound network) the key is the
//! seed alone, and the record says so. If the beacon cannot be reached for
//! `--draw-beacon-patience` (60 s) after the round is due, the draw goes on keyed by the seed
//! alone and the record says the beacon was unavailable: a sale never waits on a third party
//! for longer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// drand's quicknet chain (a round every 3 s), the default beacon.
pub use timedeal_api::DRAND_QUICKNET;

/// A beacon chain's timing, from `<url>/info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Chain {
    /// Unix seconds of round 1.
    pub genesis_time: u64,
    /// Seconds between rounds.
    pub period: u64,
}

impl Chain {
    /// The first round emitted strictly after `after_ms` (Unix milliseconds).
    pub fn round_after(&self, after_ms: i64) -> u64 {
        let period_ms = self.period.max(1) as i64 * 1_000;
        let since = after_ms - self.genesis_time as i64 * 1_000;
        if since < 0 {
            return 1;
        }
        (since / period_ms) as u64 + 2
    }

    /// When round `round` is emitted, in Unix milliseconds.
    pub fn emitted_ms(&self, round: u64) -> i64 {
        (self.genesis_time as i64 + round.saturating_sub(1) as i64 * self.period as i64) * 1_000
    }
}

/// What the record says of the beacon: published before the first join (its `source`), and its
/// round once drawn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BeaconRecord {
    /// The beacon's URL, bound into the commitment: `SHA-256(seed || source)`.
    pub source: String,
    /// The round keying the draw: the first emitted strictly after `after`. Absent until drawn,
    /// and when the beacon could not be reached in time.
    pub round: Option<u64>,
    /// That round's randomness, hex: the draw is keyed by `seed || randomness`.
    pub randomness: Option<String>,
    /// When the pre-queue closed (the deal's start), Unix milliseconds.
    pub after: i64,
    /// True when the beacon could not be reached in time, so the draw was keyed by the seed
    /// alone.
    pub unavailable: bool,
}

/// The draw's key: the seed, then the beacon's randomness when there is one.
pub fn draw_key(seed: &[u8], randomness: Option<&[u8]>) -> Vec<u8> {
    let mut key = seed.to_vec();
    key.extend_from_slice(randomness.unwrap_or_default());
    key
}

#[derive(Deserialize)]
struct Round {
    round: u64,
    randomness: String,
}

/// Reads a beacon over HTTP.
#[derive(Clone)]
pub struct BeaconClient {
    http: reqwest::Client,
}

impl Default for BeaconClient {
    fn default() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client with a timeout"),
        }
    }
}

impl BeaconClient {
    /// The chain's timing.
    pub async fn chain(&self, url: &str) -> Result<Chain, Error> {
        let url = format!("{}/info", url.trim_end_matches('/'));
        self.http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| Error::Beacon(format!("cannot read {url}: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Beacon(format!("{url} is not a beacon's chain info: {e}")))
    }

    /// Round `round`'s randomness (hex, lowercase), or `None` while it is not emitted yet.
    pub async fn round(&self, url: &str, round: u64) -> Result<Option<String>, Error> {
        let url = format!("{}/public/{round}", url.trim_end_matches('/'));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::Beacon(format!("cannot read {url}: {e}")))?;
        // drand answers a round not yet emitted with 425 Too Early (some relays with 404);
        // anything else that is not a round is an error, retried, never "not yet".
        if matches!(response.status().as_u16(), 404 | 425) {
            return Ok(None);
        }
        let answer: Round = response
            .error_for_status()
            .map_err(|e| Error::Beacon(format!("cannot read {url}: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Beacon(format!("{url} is not a beacon round: {e}")))?;
        let valid = answer.round == round
            && answer.randomness.len() >= 32
            && super::draw::unhex(&answer.randomness).is_some();
        if !valid {
            return Err(Error::Beacon(format!(
                "{url} answered round {} with randomness {:?}",
                answer.round, answer.randomness
            )));
        }
        Ok(Some(answer.randomness.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_is_the_first_emitted_after_the_close() {
        let chain = Chain {
            genesis_time: 1_000,
            period: 3,
        };
        // Round 1 at 1,000 s, round 2 at 1,003 s, ...
        assert_eq!(chain.emitted_ms(1), 1_000_000);
        assert_eq!(chain.emitted_ms(2), 1_003_000);
        assert_eq!(chain.round_after(1_000_000), 2, "strictly after");
        assert_eq!(chain.round_after(1_002_999), 2);
        assert_eq!(chain.round_after(1_003_000), 3);
        assert_eq!(chain.round_after(999_000), 1);
        for after in [1_000_000, 1_001_500, 1_005_999, 1_006_000] {
            let round = chain.round_after(after);
            assert!(chain.emitted_ms(round) > after);
            assert!(chain.emitted_ms(round - 1) <= after || round == 1);
        }
    }

    #[test]
    fn the_key_is_the_seed_then_the_randomness() {
        assert_eq!(draw_key(b"seed", None), b"seed".to_vec());
        assert_eq!(draw_key(b"seed", Some(&[1, 2])), b"seed\x01\x02".to_vec());
    }
}
