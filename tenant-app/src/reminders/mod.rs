//! Email reminders: a shopper leaves an address and is mailed 12 h and 1 h before the start.
//!
//! Double opt-in: a left address first gets one confirmation mail, and only its owner, following
//! that mail's link, makes it receive reminders. An address nobody confirms is deleted a day
//! after it was left, and one deal keeps at most `--reminder-limit` addresses, so a sign-up form
//! cannot turn the platform's mail server against strangers.
//!
//! Each mail goes once across replicas: a replica locks one due row (`FOR UPDATE SKIP LOCKED`,
//! so others pass over it), hands the mail to the SMTP server, and marks it sent in the same
//! transaction. A replica that dies between the SMTP server accepting and the commit leaves the
//! row unmarked, and another replica sends that one mail again: a reminder twice rather than
//! none. Addresses are personal data: they never reach logs or metrics, the mail's link removes
//! one, and the deal's retention removes them all.

pub mod mail;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{rngs::OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

use crate::{app::App, db::bounded, error::Error};

pub use mail::Mailer;

/// How long before the start a reminder goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lead {
    TwelveHours,
    OneHour,
}

impl Lead {
    pub const ALL: [Lead; 2] = [Lead::TwelveHours, Lead::OneHour];

    pub fn before_start(self) -> chrono::Duration {
        match self {
            Lead::TwelveHours => chrono::Duration::hours(12),
            Lead::OneHour => chrono::Duration::hours(1),
        }
    }

    /// The column marking this mail sent (a fixed name, safe to format into SQL).
    fn sent_column(self) -> &'static str {
        match self {
            Lead::TwelveHours => "sent_12h_at",
            Lead::OneHour => "sent_1h_at",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Lead::TwelveHours => "12h",
            Lead::OneHour => "1h",
        }
    }
}

/// The reminder due at `now`, if any: the 12 h mail from 12 h before the start until the 1 h
/// mail is due, and the 1 h mail from then until the start. A storefront that was down through
/// a whole window sends nothing late: a "starts in 12 hours" mail an hour before the start
/// would mislead.
pub fn due_at(start: DateTime<Utc>, now: DateTime<Utc>) -> Option<Lead> {
    if now >= start {
        None
    } else if now >= start - Lead::OneHour.before_start() {
        Some(Lead::OneHour)
    } else if now >= start - Lead::TwelveHours.before_start() {
        Some(Lead::TwelveHours)
    } else {
        None
    }
}

/// The reminders an address left at `now` will get: those whose moment is still ahead.
pub fn ahead_of(start: DateTime<Utc>, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    Lead::ALL
        .iter()
        .map(|lead| start - lead.before_start())
        .filter(|at| *at >= now)
        .collect()
}

/// The longest address accepted (RFC 5321's limit on a path).
const MAX_EMAIL: usize = 254;

/// Checks an address: one line, at most 254 characters, and one an SMTP server takes.
/// Returned lowercased, so one mailbox signs up once.
pub fn check_email(given: &str) -> Result<String, String> {
    let email = given.trim();
    if email.is_empty() {
        return Err("give the email address to remind".into());
    }
    if email.chars().count() > MAX_EMAIL {
        return Err(format!(
            "the address is {} characters long; at most {MAX_EMAIL} fit",
            email.chars().count()
        ));
    }
    if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("an email address has no spaces and is on one line".into());
    }
    email
        .parse::<lettre::Address>()
        .map_err(|_| format!("{email:?} is not an email address, such as ana@example.com"))?;
    Ok(email.to_lowercase())
}

/// What a shopper sends to be reminded.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Where to send the reminders, such as `ana@example.com`.
    #[schema(max_length = 254, format = "email")]
    pub email: String,
}

/// Redacted: addresses never reach the logs, even through a debug print.
impl std::fmt::Debug for SignUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignUp(..)")
    }
}

/// What a sign-up answers: when the mails will go, once the address is confirmed. The address
/// is not echoed, and the answer is the same whether it was left before or not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedUp {
    /// When the reminders will be sent, once the address is confirmed.
    pub reminders_at: Vec<DateTime<Utc>>,
    /// Always true: a confirmation mail goes first, and reminders only after its link is
    /// followed.
    pub confirmation_needed: bool,
    /// Until when the confirmation link works; an address not confirmed by then is deleted.
    pub confirm_by: DateTime<Utc>,
}

/// How long an address waits for its owner to confirm it before it is deleted.
pub const CONFIRMATION_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// The addresses one deal keeps when `--reminder-limit` is not given.
pub const DEFAULT_LIMIT: u32 = 10_000;

/// Whether an address was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Kept now, or already.
    Yes,
    /// The deal keeps `limit` addresses already (said to every address alike).
    Full,
}

/// Keeps an address, unconfirmed, unless the deal already keeps `limit`; a second sign-up of
/// the same address changes nothing (and sends no second confirmation mail).
pub async fn sign_up(
    pool: &PgPool,
    email: &str,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Kept, Error> {
    let mut tx = bounded("cannot keep the reminder", pool.begin()).await?;
    // Sign-ups of one deal take turns, so replicas together keep at most `limit`; other deals'
    // schemas have other keys.
    bounded(
        "cannot keep the reminder",
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.reminders'))")
            .execute(&mut *tx),
    )
    .await?;
    // Full is full for every address, kept or not, so the answer tells nobody who is kept.
    let kept: i64 = bounded(
        "cannot keep the reminder",
        sqlx::query_scalar("SELECT count(*) FROM reminders").fetch_one(&mut *tx),
    )
    .await?;
    if kept >= i64::from(limit) {
        return Ok(Kept::Full);
    }
    bounded(
        "cannot keep the reminder",
        sqlx::query(
            "INSERT INTO reminders (email, token, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(email)
        .bind(new_token())
        .bind(now)
        .execute(&mut *tx),
    )
    .await?;
    bounded("cannot keep the reminder", tx.commit()).await?;
    Ok(Kept::Yes)
}

/// Confirms the address the token belongs to; false when there is none (never left, deleted
/// unconfirmed after a day, unsubscribed, or deleted with the deal's retention). Confirming
/// twice is confirming once.
pub async fn confirm(pool: &PgPool, token: &str, now: DateTime<Utc>) -> Result<bool, Error> {
    let found = bounded(
        "cannot confirm the reminder",
        sqlx::query(
            "UPDATE reminders SET confirmed_at = coalesce(confirmed_at, $2) WHERE token = $1",
        )
        .bind(token)
        .bind(now)
        .execute(pool),
    )
    .await?
    .rows_affected();
    Ok(found > 0)
}

/// Deletes the addresses nobody confirmed within [`CONFIRMATION_WINDOW`] of their confirmation
/// mail (or of being left, when no mail could go).
pub async fn forget_unconfirmed(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, Error> {
    Ok(bounded(
        "cannot delete unconfirmed reminders",
        sqlx::query(
            "DELETE FROM reminders WHERE confirmed_at IS NULL \
             AND coalesce(confirmation_sent_at, created_at) < $1",
        )
        .bind(now - CONFIRMATION_WINDOW)
        .execute(pool),
    )
    .await?
    .rows_affected())
}

/// Removes the address the token belongs to; false when there is none (already removed, or
/// deleted with the deal's retention).
pub async fn unsubscribe(pool: &PgPool, token: &str) -> Result<bool, Error> {
    let deleted = bounded(
        "cannot remove the reminder",
        sqlx::query("DELETE FROM reminders WHERE token = $1")
            .bind(token)
            .execute(pool),
    )
    .await?
    .rows_affected();
    Ok(deleted > 0)
}

/// Whether a token still names an address (the unsubscribe page asks before it removes).
pub async fn known_token(pool: &PgPool, token: &str) -> Result<bool, Error> {
    bounded(
        "cannot look the reminder up",
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reminders WHERE token = $1)")
            .bind(token)
            .fetch_one(pool),
    )
    .await
}

/// 128 random bits from the operating system, in hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token as it may appear in a link: 32 lowercase hex digits.
pub fn plausible_token(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Sends every confirmation and reminder due now, one row per transaction, and deletes the
/// addresses nobody confirmed in time; returns how many mails went. Run by every replica, a few
/// times a minute.
pub async fn send_due(app: &App, mailer: &Mailer) -> Result<usize, Error> {
    let deal = app.deal();
    let start = deal.timeline.start;
    let mut sent = 0;
    // Due reminders first: confirmations left in a burst never hold them past their moment.
    while let Some(lead) = due_at(start, app.clock.now()) {
        if !send_one(app, mailer, lead, start).await? {
            break;
        }
        sent += 1;
    }
    // A confirmation is worth a mail only while a reminder is still ahead.
    while !ahead_of(start, app.clock.now()).is_empty() && send_confirmation(app, mailer).await? {
        sent += 1;
    }
    forget_unconfirmed(&app.db, app.clock.now()).await?;
    Ok(sent)
}

/// Locks one address due for `lead`'s mail, sends it, and marks it sent; false when none is due.
async fn send_one(
    app: &App,
    mailer: &Mailer,
    lead: Lead,
    start: DateTime<Utc>,
) -> Result<bool, Error> {
    let column = lead.sent_column();
    let due = format!(
        "SELECT id, email, token FROM reminders WHERE {column} IS NULL \
         AND confirmed_at <= $1 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    let sent = send_once(
        app,
        sqlx::query(&due).bind(start - lead.before_start()),
        column,
        |address| {
            let deal = app.deal();
            mail::compose(&mail::Reminder {
                deal: &deal,
                lead,
                to: &address.email,
                from: mailer.from(),
                unsubscribe: &app.unsubscribe_url(&address.token),
                storefront: &app.public_url,
                message_id: format!(
                    "<reminder-{}-{}.{}@timedeal>",
                    address.id,
                    lead.label(),
                    deal.name
                ),
            })
        },
        mailer,
    )
    .await?;
    if sent {
        app.metrics.reminders_sent.get_or_create(&lead.into()).inc();
    }
    Ok(sent)
}

/// Locks one address whose confirmation mail has not gone, sends it, and marks it sent; false
/// when there is none.
async fn send_confirmation(app: &App, mailer: &Mailer) -> Result<bool, Error> {
    let sent = send_once(
        app,
        sqlx::query(
            "SELECT id, email, token FROM reminders \
             WHERE confirmed_at IS NULL AND confirmation_sent_at IS NULL \
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        ),
        "confirmation_sent_at",
        |address| {
            let deal = app.deal();
            mail::compose_confirmation(&mail::Confirmation {
                deal: &deal,
                to: &address.email,
                from: mailer.from(),
                confirm: &app.confirm_url(&address.token),
                unsubscribe: &app.unsubscribe_url(&address.token),
                confirm_by: app.clock.now() + CONFIRMATION_WINDOW,
                message_id: format!("<confirm-{}.{}@timedeal>", address.id, deal.name),
            })
        },
        mailer,
    )
    .await?;
    if sent {
        app.metrics.reminder_confirmations_sent.inc();
    }
    Ok(sent)
}

/// One kept address, as a mail to it is written.
struct Address {
    id: i64,
    email: String,
    token: String,
}

/// Sends one mail once across replicas: locks the row `due` finds (others pass it over), hands
/// what `write` makes of it to the SMTP server, and sets `column` (a fixed name) in the same
/// transaction; false when `due` finds no row.
async fn send_once(
    app: &App,
    due: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    column: &'static str,
    write: impl FnOnce(&Address) -> Result<lettre::Message, Error>,
    mailer: &Mailer,
) -> Result<bool, Error> {
    let mut tx = bounded("cannot begin sending reminders", app.db.begin()).await?;
    let row = bounded("cannot find due reminders", due.fetch_optional(&mut *tx)).await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let address = Address {
        id: row.get("id"),
        email: row.get("email"),
        token: row.get("token"),
    };
    let sent = match write(&address) {
        Ok(message) => mailer.send(message).await,
        Err(error) => Err(error),
    };
    let update = format!("UPDATE reminders SET {column} = $2 WHERE id = $1");
    let mark = match sent {
        Ok(()) => sqlx::query(&update).bind(address.id).bind(app.clock.now()),
        // Refused for good: the address goes, so it neither blocks the others nor is tried
        // every 2 s. The reason names the server's reply, never the address.
        Err(Error::MailRefused(why)) => {
            tracing::warn!(reminder = address.id, %why, "a mail was refused for good; its address is deleted");
            sqlx::query("DELETE FROM reminders WHERE id = $1").bind(address.id)
        }
        Err(error) => return Err(error),
    };
    bounded("cannot mark the mail sent", mark.execute(&mut *tx)).await?;
    bounded("cannot mark the mail sent", tx.commit()).await?;
    Ok(true)
}

/// How often each replica looks for due reminders.
pub const EVERY: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_twelve_hour_mail_is_due_until_the_one_hour_mail_takes_over() {
        let start = at("2026-12-24T18:00:00Z");
        assert_eq!(due_at(start, at("2026-12-24T05:59:59Z")), None);
        assert_eq!(
            due_at(start, at("2026-12-24T06:00:00Z")),
            Some(Lead::TwelveHours)
        );
        assert_eq!(
            due_at(start, at("2026-12-24T16:59:59Z")),
            Some(Lead::TwelveHours)
        );
        assert_eq!(
            due_at(start, at("2026-12-24T17:00:00Z")),
            Some(Lead::OneHour)
        );
        assert_eq!(
            due_at(start, at("2026-12-24T17:59:59Z")),
            Some(Lead::OneHour)
        );
        assert_eq!(due_at(start, start), None);
    }

    #[test]
    fn an_address_left_late_gets_only_the_mails_still_ahead() {
        let start = at("2026-12-24T18:00:00Z");
        assert_eq!(
            ahead_of(start, at("2026-12-23T18:00:00Z")),
            vec![at("2026-12-24T06:00:00Z"), at("2026-12-24T17:00:00Z")]
        );
        assert_eq!(
            ahead_of(start, at("2026-12-24T12:00:00Z")),
            vec![at("2026-12-24T17:00:00Z")]
        );
        assert!(ahead_of(start, at("2026-12-24T17:30:00Z")).is_empty());
    }

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            check_email("  Ana@Example.COM ").as_deref(),
            Ok("ana@example.com")
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana @example.com",
            "ana@exa\nmple.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?} passed");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(check_email(&long).unwrap_err().contains("at most 254"));
    }

    #[test]
    fn tokens_are_random_and_recognisable() {
        let a = new_token();
        assert!(plausible_token(&a));
        assert_ne!(a, new_token());
        assert!(!plausible_token("../../etc"));
        assert!(!plausible_token(&a.to_uppercase()));
    }

    #[test]
    fn a_sign_up_never_prints_its_address() {
        let given = SignUp {
            email: "ana@example.com".into(),
        };
        assert_eq!(format!("{given:?}"), "SignUp(..)");
    }
}
