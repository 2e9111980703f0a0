//! Who may still send an order once the deal is sold out and be owed more than "sold out": the
//! shoppers holding an idempotency key (an order sent again gets that order back). Each replica
//! lists them once per sold-out stretch, so the answer to everyone else is decided before the
//! request's session is checked or its body parsed (`http::sold_out`), with no Redis call.
//!
//! The list is whole while the deal's `keys` count stands: `reserve.lua` raises it with every
//! new key, and writing a key back (`Reservations::remember`) raises it too. A list made in
//! another epoch, or under another count, is not used.

use std::collections::HashSet;

use redis::aio::ConnectionManager;

use crate::{error::Error, queue::Figures};

/// The most buyers a replica lists; past it every sold-out order takes the whole path.
pub const MOST_LISTED: usize = 250_000;

/// The shoppers holding idempotency keys, as of `(epoch, keys)`.
#[derive(Debug, Default)]
pub struct Buyers {
    epoch: i64,
    keys: u64,
    ids: HashSet<String>,
    /// More than [`MOST_LISTED`]: not listed, and not listed again under the same figures.
    too_many: bool,
}

impl Buyers {
    /// Whether this list is whole for these figures.
    pub fn is_current(&self, figures: &Figures) -> bool {
        figures.restored && self.epoch == figures.epoch && self.keys == figures.keys
    }

    /// Whether `shopper` may be owed an order; everyone may, when there were too many to list.
    pub fn may_hold(&self, shopper: &str) -> bool {
        self.too_many || self.ids.contains(shopper)
    }
}

/// The shopper a field of the deal's hash names, if it is an idempotency key
/// (`k:<shopper>:<key>`; keys hold no `:`, shopper ids may).
fn shopper_of(field: &str) -> Option<&str> {
    let rest = field.strip_prefix("k:")?;
    rest.rsplit_once(':').map(|(shopper, _)| shopper)
}

/// Lists the buyers as of `figures`. `None`: the count moved while listing (an order came in,
/// so the deal is no longer sold out as `figures` said).
pub async fn list(
    redis: &ConnectionManager,
    prefix: &str,
    figures: &Figures,
) -> Result<Option<Buyers>, Error> {
    let mut redis = redis.clone();
    let deal = format!("{prefix}deal");
    let mut ids = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, fields): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(&deal)
            .arg(cursor)
            .arg("MATCH")
            .arg("k:*")
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await?;
        // Fields and values alternate (`NOVALUES` is newer than the Redis we run on).
        ids.extend(
            fields
                .iter()
                .step_by(2)
                .filter_map(|f| shopper_of(f))
                .map(str::to_owned),
        );
        if ids.len() > MOST_LISTED {
            return Ok(Some(Buyers {
                epoch: figures.epoch,
                keys: figures.keys,
                ids: HashSet::new(),
                too_many: true,
            }));
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // Keys only ever grow within an epoch: the same count after the scan as in the figures
    // (read before it) means no key was given while the scan ran.
    let (epoch, keys): (Option<i64>, Option<u64>) = redis::cmd("HMGET")
        .arg(&deal)
        .arg("epoch")
        .arg("keys")
        .query_async(&mut redis)
        .await?;
    let (epoch, keys) = (epoch.unwrap_or(-1), keys.unwrap_or(0));
    Ok(
        (epoch == figures.epoch && keys == figures.keys).then_some(Buyers {
            epoch,
            keys,
            ids,
            too_many: false,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_field_names_its_shopper_even_one_with_colons() {
        assert_eq!(shopper_of("k:anon-abc:key-1"), Some("anon-abc"));
        assert_eq!(shopper_of("k:urn:acme:42:key_2"), Some("urn:acme:42"));
        assert_eq!(shopper_of("u:anon-abc"), None);
        assert_eq!(shopper_of("k:nokey"), None);
    }

    #[test]
    fn a_list_serves_only_the_figures_it_was_made_for() {
        let buyers = Buyers {
            epoch: 3,
            keys: 10,
            ids: HashSet::from(["anon-a".to_owned()]),
            too_many: false,
        };
        let figures = Figures {
            restored: true,
            epoch: 3,
            keys: 10,
            ..Figures::default()
        };
        assert!(buyers.is_current(&figures));
        assert!(buyers.may_hold("anon-a") && !buyers.may_hold("anon-b"));
        let many = Buyers {
            too_many: true,
            ..Buyers::default()
        };
        assert!(many.may_hold("anon-b"));
        assert!(!buyers.is_current(&Figures {
            keys: 11,
            ..figures
        }));
        assert!(!buyers.is_current(&Figures {
            epoch: 4,
            ..figures
        }));
        assert!(!buyers.is_current(&Figures {
            restored: false,
            ..figures
        }));
    }
}
