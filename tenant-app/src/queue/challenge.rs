//! The optional join puzzle (`queue.joinChallenge`): a proof of work that makes joining in bulk
//! costly, checked without any state.
//!
//! `GET /api/queue/challenge` hands out a challenge signed with the deal's secret, naming the
//! deal, the shopper, the difficulty and an expiry two minutes ahead. The shopper finds a string
//! `s` (decimal digits, at most 20) such that `SHA-256(challenge ":" s)` starts with `difficulty`
//! zero bits, and joins presenting both. Any replica checks the signature, the shopper, the
//! expiry and the hash: nothing is stored. A solution is good for its shopper until its challenge
//! expires.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::tokens::{Signer, TokenError};

/// The headers a join presents the challenge and its solution in.
pub const CHALLENGE_HEADER: &str = "x-timedeal-challenge";
pub const SOLUTION_HEADER: &str = "x-timedeal-solution";

/// How long a challenge may be solved and used.
pub const LIFETIME_MS: i64 = 120_000;

const PURPOSE: &str = "challenge";

/// A new challenge for `shopper` and its expiry.
pub fn issue(
    signer: &Signer,
    deal: &str,
    shopper: &str,
    difficulty: u32,
    now_ms: i64,
) -> (String, i64) {
    let mut salt = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut salt);
    let expires_ms = now_ms + LIFETIME_MS;
    let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
    let body = format!("{deal}|{shopper}|{difficulty}|{expires_ms}|{salt}");
    (signer.sign(PURPOSE, &body), expires_ms)
}

/// Leading zero bits of SHA-256 of `challenge:solution`.
pub fn work(challenge: &str, solution: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(solution.as_bytes())
        .finalize();
    let mut bits = 0;
    for byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// Solves a challenge by counting up: what the page's worker does, for tests and apps.
pub fn solve(challenge: &str, difficulty: u32) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|s| work(challenge, s) >= difficulty)
        .expect("some number solves it")
}

/// Checks a solved challenge for this deal and shopper at `now_ms`, against the difficulty the
/// deal asks now (a challenge issued under a lower difficulty no longer passes).
pub fn check(
    signer: &Signer,
    challenge: &str,
    solution: &str,
    deal: &str,
    shopper: &str,
    difficulty: u32,
    now_ms: i64,
) -> Result<(), TokenError> {
    let body = signer.open(PURPOSE, challenge)?;
    let (challenge_deal, rest) = body.split_once('|').ok_or(TokenError::Malformed)?;
    let mut parts = rest.rsplitn(4, '|');
    let _salt = parts.next();
    let expires_ms: Option<i64> = parts.next().and_then(|s| s.parse().ok());
    let issued_difficulty: Option<u32> = parts.next().and_then(|s| s.parse().ok());
    let (Some(expires_ms), Some(issued_difficulty), Some(challenge_shopper)) =
        (expires_ms, issued_difficulty, parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if challenge_deal != deal {
        return Err(TokenError::OtherDeal);
    }
    if challenge_shopper != shopper {
        return Err(TokenError::Foreign);
    }
    if expires_ms <= now_ms {
        return Err(TokenError::Expired);
    }
    let plain = !solution.is_empty()
        && solution.len() <= 20
        && solution.bytes().all(|b| b.is_ascii_digit());
    if !plain || work(challenge, solution) < issued_difficulty.max(difficulty) {
        return Err(TokenError::Unsolved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_solved_challenge_passes_for_its_shopper_until_it_expires() {
        let (challenge, expires) = issue(&signer(), "deal", "anon-a", 8, 1_000);
        let solution = solve(&challenge, 8);
        assert!(work(&challenge, &solution) >= 8);
        let check = |shopper: &str, now: i64| {
            super::check(&signer(), &challenge, &solution, "deal", shopper, 8, now)
        };
        assert_eq!(check("anon-a", expires - 1), Ok(()));
        assert_eq!(check("anon-a", expires), Err(TokenError::Expired));
        assert_eq!(check("anon-b", 2_000), Err(TokenError::Foreign));
        assert_eq!(
            super::check(
                &signer(),
                &challenge,
                &solution,
                "other",
                "anon-a",
                8,
                2_000
            ),
            Err(TokenError::OtherDeal)
        );
    }

    #[test]
    fn an_unsolved_or_odd_solution_fails() {
        let (challenge, _) = issue(&signer(), "deal", "anon-a", 12, 0);
        let wrong = (0u64..)
            .map(|n| n.to_string())
            .find(|s| work(&challenge, s) < 12)
            .unwrap();
        let check =
            |solution: &str| super::check(&signer(), &challenge, solution, "deal", "anon-a", 12, 1);
        assert_eq!(check(&wrong), Err(TokenError::Unsolved));
        assert_eq!(check(""), Err(TokenError::Unsolved));
        assert_eq!(check("12a"), Err(TokenError::Unsolved));
        assert_eq!(check(&"1".repeat(21)), Err(TokenError::Unsolved));
    }

    #[test]
    fn a_raised_difficulty_applies_to_challenges_already_out() {
        let (challenge, _) = issue(&signer(), "deal", "anon-a", 4, 0);
        let easy = (0u64..)
            .map(|n| n.to_string())
            .find(|s| (4..10).contains(&work(&challenge, s)))
            .unwrap();
        assert_eq!(
            check(&signer(), &challenge, &easy, "deal", "anon-a", 10, 1),
            Err(TokenError::Unsolved)
        );
    }

    #[test]
    fn work_counts_leading_zero_bits() {
        // SHA-256("abc:") and friends are fixed; check the counting against a hand-made case.
        let (challenge, _) = issue(&signer(), "deal", "anon-a", 1, 0);
        let solution = solve(&challenge, 10);
        let digest = Sha256::digest(format!("{challenge}:{solution}"));
        assert_eq!(digest[0], 0);
        assert!(digest[1] < 0x40);
    }
}
