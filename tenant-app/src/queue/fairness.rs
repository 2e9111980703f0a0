//! The public record of the queue's fairness, and its check.
//!
//! `/api/fairness` publishes the draw's commitment from before anyone could join, the seed and
//! the pre-queue's size once the draw is fixed at the start, and the head of the admission log's
//! hash chain. `/api/fairness/log` serves the log itself: one line per admission step, the time
//! in milliseconds and then `place:number` for each shopper admitted, in order. The chain starts
//! from the commitment's 32 bytes, and each entry extends it: `h = SHA-256(h || entry)`, so a
//! published head fixes every admission before it.
//!
//! [`verify`] is what `tenant-app verify-draw URL` runs, and what anyone can rewrite: the seed
//! matches the commitment, every pre-queue place follows from the seed, and every admission in
//! the log went to the number holding that place, in order of place.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    beacon::{self, BeaconRecord},
    draw::{self, Draw},
};
use crate::error::Error;

/// The answer of `GET /api/fairness`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fairness {
    pub deal: String,
    /// SHA-256 of the seed followed by the beacon's URL (none: the seed alone), hex: fixed
    /// before the pre-queue opened.
    pub commitment: String,
    /// The seed, hex: revealed once the pre-queue is drawn at the start.
    pub seed: Option<String>,
    /// How many joined before the start: the numbers the draw places.
    pub pre_queue_size: Option<u64>,
    /// How places follow from the seed.
    pub algorithm: String,
    pub admission_log: LogSummary,
    /// The randomness beacon keying the draw with the seed: absent when the deal has none.
    #[serde(default)]
    pub beacon: Option<BeaconRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogSummary {
    /// Entries (admission steps) so far.
    pub entries: u64,
    /// Shoppers admitted so far.
    pub admitted: u64,
    /// The hash chain's head over those entries, hex.
    pub head: String,
    /// True once the deal has ended: the log is final.
    pub complete: bool,
}

pub const ALGORITHM: &str = "Place of join number j (1..=n) is permute(j - 1) + 1, where permute \
is a 4-round Feistel network over 2h bits (h the smallest whole number >= 1 with 4^h >= n), round \
r mapping (L, R) to (R, L xor F(r, R)), F(r, x) = the first 8 bytes, big-endian, of SHA-256(key || \
\"timedeal-draw\" || r as one byte || x as 4 bytes big-endian) modulo 2^h, applied again while \
the result is n or more. The key is the seed followed by the beacon round's randomness (its \
bytes, from hex), or the seed alone without a beacon; the round is the first the beacon emits \
strictly after the pre-queue closed, and the commitment is SHA-256(seed || beacon URL). Numbers \
above n are their own places. The admission log's chain starts at the commitment's bytes; each \
entry extends it as SHA-256(head || entry).";

/// The chain's head over `entries`, starting from the commitment.
pub fn chain(commitment: &str, entries: &[String]) -> String {
    let mut head = draw::unhex(commitment).unwrap_or_default();
    for entry in entries {
        let mut hash = Sha256::new();
        hash.update(&head);
        hash.update(entry.as_bytes());
        head = hash.finalize().to_vec();
    }
    draw::hex(&head)
}

/// Shoppers admitted in `entries`.
pub fn admitted(entries: &[String]) -> u64 {
    entries
        .iter()
        .map(|e| e.split(' ').skip(1).count() as u64)
        .sum()
}

/// What a check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The place of each pre-queue join number: `places[j - 1]` for number `j`.
    pub places: Vec<u64>,
    pub admitted: u64,
    pub log_head: String,
}

/// Checks the record against the log: the seed against the commitment, every admission against
/// the draw and the order of places, and the chain's head.
pub fn verify(record: &Fairness, log: &[String]) -> Result<Verified, Error> {
    let unfair = |what: String| Error::Unfair(what);
    let seed = record.seed.as_deref().ok_or_else(|| {
        unfair("the seed is not revealed yet: the pre-queue is drawn at the start".into())
    })?;
    let seed = draw::unhex(seed).ok_or_else(|| unfair("the seed is not hex".into()))?;
    // A fixed length keeps `seed || beacon` unambiguous in the commitment.
    if seed.len() != 32 {
        return Err(unfair(format!("the seed is {} bytes, not 32", seed.len())));
    }
    let source = record.beacon.as_ref().map_or("", |b| b.source.as_str());
    let committed = draw::commitment(&seed, source);
    if committed != record.commitment.to_ascii_lowercase() {
        return Err(unfair(format!(
            "SHA-256 of the revealed seed and the beacon {source:?} is {committed}, not the \
             commitment {}",
            record.commitment
        )));
    }
    let n = record
        .pre_queue_size
        .ok_or_else(|| unfair("the pre-queue's size is not published".into()))?;
    let randomness = match &record.beacon {
        Some(BeaconRecord {
            randomness: Some(hex),
            round: Some(_),
            ..
        }) => Some(
            draw::unhex(hex).ok_or_else(|| unfair("the beacon's randomness is not hex".into()))?,
        ),
        Some(BeaconRecord {
            unavailable: true,
            source,
            ..
        }) if n > 0 => {
            return Err(unfair(format!(
                "the draw was keyed by the seed alone: the storefront recorded the beacon \
                 {source} as unavailable, so whoever could read the seed before the start could \
                 predict every place"
            )))
        }
        Some(BeaconRecord {
            unavailable: true, ..
        })
        | None => None,
        Some(_) if n == 0 => None,
        Some(_) => {
            return Err(unfair(
                "the pre-queue is drawn but the beacon's round is not published".into(),
            ))
        }
    };
    let draw = Draw::new(&beacon::draw_key(&seed, randomness.as_deref()), n);
    let places: Vec<u64> = (1..=n)
        .map(|number| draw.place_of(number).expect("numbers 1..=n have places"))
        .collect();
    let mut last_place = 0;
    for (line, entry) in log.iter().enumerate() {
        let mut fields = entry.split(' ');
        fields
            .next()
            .and_then(|ms| ms.parse::<i64>().ok())
            .ok_or_else(|| unfair(format!("log entry {}: no time", line + 1)))?;
        for admission in fields {
            let (place, number) = admission
                .split_once(':')
                .and_then(|(p, n)| Some((p.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
                .ok_or_else(|| {
                    unfair(format!(
                        "log entry {}: {admission:?} is not place:number",
                        line + 1
                    ))
                })?;
            if place <= last_place {
                return Err(unfair(format!(
                    "log entry {}: place {place} admitted after place {last_place}",
                    line + 1
                )));
            }
            let holder = if place <= n {
                draw.number_at(place).expect("places 1..=n have numbers")
            } else {
                place
            };
            if holder != number {
                return Err(unfair(format!(
                    "log entry {}: place {place} went to number {number}, but the draw gives it to {holder}",
                    line + 1
                )));
            }
            last_place = place;
        }
    }
    let log_head = chain(&record.commitment, log);
    if log.len() as u64 == record.admission_log.entries && log_head != record.admission_log.head {
        return Err(unfair(format!(
            "the log's chain ends at {log_head}, but {} was published",
            record.admission_log.head
        )));
    }
    Ok(Verified {
        places,
        admitted: admitted(log),
        log_head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"a seed of thirty-two bytes long!";

    fn record(log: &[String]) -> Fairness {
        let commitment = draw::commitment(SEED, "");
        Fairness {
            deal: "d".into(),
            seed: Some(draw::hex(SEED)),
            pre_queue_size: Some(10),
            algorithm: ALGORITHM.into(),
            admission_log: LogSummary {
                entries: log.len() as u64,
                admitted: admitted(log),
                head: chain(&commitment, log),
                complete: false,
            },
            commitment,
            beacon: None,
        }
    }

    const BEACON: &str = "https://beacon.example/chain";
    const RANDOMNESS: &str = "5be1c0ffee5be1c0ffee5be1c0ffee5be1c0ffee5be1c0ffee5be1c0ffee5be1";

    /// A record whose draw is keyed by the seed and a beacon round, with an honest log.
    fn beacon_record() -> (Fairness, Vec<String>) {
        let key = beacon::draw_key(SEED, draw::unhex(RANDOMNESS).as_deref());
        let draw = Draw::new(&key, 10);
        let log = vec![format!("1000 1:{}", draw.number_at(1).unwrap())];
        let commitment = draw::commitment(SEED, BEACON);
        let mut record = record(&log);
        record.admission_log.head = chain(&commitment, &log);
        record.commitment = commitment;
        record.beacon = Some(BeaconRecord {
            source: BEACON.into(),
            round: Some(42),
            randomness: Some(RANDOMNESS.into()),
            after: 0,
            unavailable: false,
        });
        (record, log)
    }

    #[test]
    fn a_beacon_keyed_draw_checks_out_and_the_seed_alone_does_not_predict_it() {
        let (record, log) = beacon_record();
        verify(&record, &log).unwrap();
        // Who knew the seed alone placed the numbers differently: that log does not check out
        // against the beacon's round (the draws differ for this seed at place 1).
        let seed_only = Draw::new(SEED, 10);
        let keyed = Draw::new(
            &beacon::draw_key(SEED, draw::unhex(RANDOMNESS).as_deref()),
            10,
        );
        let differs = (1..=10).find(|&p| seed_only.number_at(p) != keyed.number_at(p));
        let place = differs.expect("a beacon round changes the draw");
        let guessed = vec![format!(
            "1000 {place}:{}",
            seed_only.number_at(place).unwrap()
        )];
        assert!(verify(&record, &guessed).is_err());
    }

    #[test]
    fn a_beacon_swapped_after_the_commitment_is_caught() {
        let (mut record, log) = beacon_record();
        record.beacon.as_mut().unwrap().source = "https://another.example".into();
        let error = verify(&record, &log).unwrap_err().to_string();
        assert!(error.contains("not the commitment"), "{error}");
        let (mut record, log) = beacon_record();
        record.beacon.as_mut().unwrap().round = None;
        record.beacon.as_mut().unwrap().randomness = None;
        let error = verify(&record, &log).unwrap_err().to_string();
        assert!(error.contains("round is not published"), "{error}");
    }

    fn honest_log() -> Vec<String> {
        let draw = Draw::new(SEED, 10);
        let at = |place: u64| format!("{place}:{}", draw.number_at(place).unwrap());
        vec![
            format!("1000 {} {}", at(1), at(2)),
            format!("1100 {} {} 12:12", at(4), at(9)),
        ]
    }

    #[test]
    fn an_honest_record_checks_out() {
        let log = honest_log();
        let verified = verify(&record(&log), &log).unwrap();
        assert_eq!(verified.admitted, 5);
        let mut sorted = verified.places.clone();
        sorted.sort();
        assert_eq!(sorted, (1..=10).collect::<Vec<_>>());
    }

    #[test]
    fn a_seed_that_is_not_the_committed_one_is_caught() {
        let log = honest_log();
        let mut tampered = record(&log);
        tampered.seed = Some(draw::hex(b"another seed of thirty-two bytes"));
        let error = verify(&tampered, &log).unwrap_err().to_string();
        assert!(error.contains("not the commitment"), "{error}");
    }

    #[test]
    fn an_admission_out_of_the_drawn_order_is_caught() {
        let mut log = honest_log();
        let record = record(&log);
        let draw = Draw::new(SEED, 10);
        // Place 3 given to place 5's holder.
        log.push(format!("1200 3:{}", draw.number_at(5).unwrap()));
        let error = verify(&record, &log).unwrap_err().to_string();
        assert!(error.contains("after place"), "{error}");
        let mut swapped = honest_log();
        swapped[0] = format!(
            "1000 1:{} 2:{}",
            draw.number_at(2).unwrap(),
            draw.number_at(1).unwrap()
        );
        let error = verify(&record, &swapped).unwrap_err().to_string();
        assert!(error.contains("the draw gives it to"), "{error}");
    }

    #[test]
    fn a_rewritten_log_does_not_match_the_published_head() {
        let log = honest_log();
        let record = record(&log);
        let mut rewritten = log.clone();
        rewritten[1] = rewritten[1].replace("1100", "1101");
        let error = verify(&record, &rewritten).unwrap_err().to_string();
        assert!(error.contains("was published"), "{error}");
    }
}
