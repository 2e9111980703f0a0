//! The queue ticket: a shopper's place, held by the shopper rather than by Redis.
//!
//! Joining takes one number from Redis (`INCR`) and hands it back signed with the deal's secret,
//! together with the deal, the shopper, Redis's epoch and the issue time. Every poll after that
//! is answered from the ticket and the deal's admitted head, which each replica reads a few
//! times a second: no per-shopper entry in Redis while waiting. A refresh, a second tab or an
//! app presenting the ticket keeps the place; a ticket is only good for the shopper and deal it
//! was issued to.

use crate::tokens::{Signer, TokenError};

/// The cookie carrying the ticket for browsers.
pub const TICKET_COOKIE: &str = "td_ticket";
/// The header carrying the ticket for apps.
pub const TICKET_HEADER: &str = "x-timedeal-ticket";

const PURPOSE: &str = "ticket";

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub deal: String,
    pub shopper: String,
    /// Redis's epoch when the number was taken: numbers restart when Redis loses its data, so
    /// a ticket of an earlier epoch holds no place.
    pub epoch: i64,
    /// The join number, from 1. Numbers up to the pre-queue's size are placed by the draw;
    /// later numbers are their own place.
    pub number: u64,
    /// Units the shopper held or owned when joining (they can change only once admitted).
    pub owned: u32,
    pub issued_ms: i64,
}

impl Ticket {
    pub fn sign(&self, signer: &Signer) -> String {
        let body = format!(
            "{}|{}|{}|{}|{}|{}",
            self.deal, self.shopper, self.epoch, self.number, self.owned, self.issued_ms
        );
        signer.sign(PURPOSE, &body)
    }

    /// Checks a ticket for this deal and shopper.
    pub fn open(
        signer: &Signer,
        token: &str,
        deal: &str,
        shopper: &str,
    ) -> Result<Ticket, TokenError> {
        let body = signer.open(PURPOSE, token)?;
        let (token_deal, rest) = body.split_once('|').ok_or(TokenError::Malformed)?;
        // Shopper ids may hold '|' (a JWT subject), so the numbers are read from the end.
        let mut parts = rest.rsplitn(5, '|');
        let issued_ms = parts.next().and_then(|s| s.parse().ok());
        let owned = parts.next().and_then(|s| s.parse().ok());
        let number = parts.next().and_then(|s| s.parse().ok());
        let epoch = parts.next().and_then(|s| s.parse().ok());
        let token_shopper = parts.next();
        let (Some(issued_ms), Some(owned), Some(number), Some(epoch), Some(token_shopper)) =
            (issued_ms, owned, number, epoch, token_shopper)
        else {
            return Err(TokenError::Malformed);
        };
        if token_deal != deal {
            return Err(TokenError::OtherDeal);
        }
        if token_shopper != shopper {
            return Err(TokenError::Foreign);
        }
        Ok(Ticket {
            deal: deal.to_owned(),
            shopper: shopper.to_owned(),
            epoch,
            number,
            owned,
            issued_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};

    fn signer() -> Signer {
        Signer::new(b"0123456789abcdef0123456789abcdef")
    }

    fn ticket() -> Ticket {
        Ticket {
            deal: "winter-headphones".into(),
            shopper: "jwt-a|b".into(),
            epoch: 3,
            number: 1_234,
            owned: 1,
            issued_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn a_ticket_reads_back_as_issued() {
        let token = ticket().sign(&signer());
        assert_eq!(
            Ticket::open(&signer(), &token, "winter-headphones", "jwt-a|b"),
            Ok(ticket())
        );
    }

    #[test]
    fn a_ticket_is_good_only_for_its_deal_and_shopper() {
        let token = ticket().sign(&signer());
        assert_eq!(
            Ticket::open(&signer(), &token, "summer-fans", "jwt-a|b"),
            Err(TokenError::OtherDeal)
        );
        assert_eq!(
            Ticket::open(&signer(), &token, "winter-headphones", "anon-x"),
            Err(TokenError::Foreign)
        );
    }

    #[test]
    fn an_edited_or_re_signed_ticket_is_forged() {
        let token = ticket().sign(&signer());
        let (_, signature) = token.split_once('.').unwrap();
        let earlier = B64.encode("winter-headphones|jwt-a|b|3|1|1|1800000000000");
        assert_eq!(
            Ticket::open(
                &signer(),
                &format!("{earlier}.{signature}"),
                "winter-headphones",
                "jwt-a|b"
            ),
            Err(TokenError::Forged)
        );
        let other = Signer::new(b"fedcba9876543210fedcba9876543210");
        assert_eq!(
            Ticket::open(
                &signer(),
                &ticket().sign(&other),
                "winter-headphones",
                "jwt-a|b"
            ),
            Err(TokenError::Forged)
        );
        // A session token is no ticket.
        let (_, session) = signer().new_session();
        assert_eq!(
            Ticket::open(&signer(), &session, "winter-headphones", "jwt-a|b"),
            Err(TokenError::Forged)
        );
    }
}
