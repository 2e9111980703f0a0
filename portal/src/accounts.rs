//! Company accounts in the platform PostgreSQL (schema `timedeal_portal`, migrated at start):
//! argon2id password hashes, sessions, lock-out after repeated failures, counters every portal
//! replica shares, and one-time reset links.

use std::{str::FromStr, time::Duration};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use chrono::{DateTime, Utc};
use rand::{distributions::Alphanumeric, Rng};
use sha2::{Digest, Sha256};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    ConnectOptions, Connection, PgPool, Row,
};

use crate::error::PortalError;

/// The schema the portal's tables live in.
pub const SCHEMA: &str = "timedeal_portal";
/// Failed sign-ins from one client for one email that hold that client back from it.
pub const LOCK_AFTER: i32 = 5;
/// Failed sign-ins for one email from every client together that hold every client back: a
/// guess spread over many addresses. Far above what one client may make, so no one client can
/// lock a company out.
pub const LOCK_AFTER_FROM_ANYWHERE: i32 = 50;
/// The window those failures are counted over, and how long a hold lasts.
pub const LOCK_FOR: chrono::Duration = chrono::Duration::minutes(15);
/// How long a session lasts without signing in again.
pub const SESSION_TTL: chrono::Duration = chrono::Duration::hours(12);
/// Shortest and longest password accepted.
pub const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 12..=128;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// An account as signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub email: String,
    /// The Company (its `metadata.name`) the account belongs to.
    pub company: String,
}

/// A session as found from its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: Account,
    pub csrf: String,
}

/// Why a sign-in was refused. Wrong email and wrong password read alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefused {
    Wrong,
    /// Too many failures from this client for this email, until then.
    Locked {
        until: DateTime<Utc>,
    },
    /// Too many failures for this email from everywhere, until then.
    LockedEverywhere {
        until: DateTime<Utc>,
    },
}

/// Why a sign-up could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignUpRefused {
    EmailTaken,
    CompanyTaken,
}

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    url: String,
}

fn random_token(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// SHA-256 of a token, hex: what is stored in its place.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a password is acceptable; the message says what to change.
pub fn password_problem(password: &str, email: &str) -> Option<String> {
    let length = password.chars().count();
    if !PASSWORD_LEN.contains(&length) {
        return Some(format!(
            "Use a password of {} to {} characters (this one has {length}).",
            PASSWORD_LEN.start(),
            PASSWORD_LEN.end()
        ));
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Some("Use a password that is not your email address.".into());
    }
    None
}

async fn hash(password: String) -> Result<String, PortalError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PortalError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PortalError::Hash(e.to_string()))?
}

async fn matches(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Says so when the portal logs in as a user that can do far more than it needs: a superuser,
/// or one that may create roles (the platform's user). The portal works on; the README shows
/// how to give it a user of its own.
async fn warn_if_mighty(connection: &mut sqlx::PgConnection) {
    let mighty: Result<(bool, bool), _> =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(connection)
            .await;
    if let Ok((superuser, createrole)) = mighty {
        if superuser || createrole {
            tracing::warn!(
                superuser,
                createrole,
                "the portal's database user may do far more than the portal needs; give it a \
                 user of its own (README: \"The portal's database user\")"
            );
        }
    }
}

/// A hash no password matches, checked for unknown emails so that they take as long as known ones.
const DECOY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$WcA6j3ULy0BxoRsoDWx7zF0kOh2qb3rk1Pq1oEf6rU4";

impl Accounts {
    /// Connects to the platform PostgreSQL as the portal's own user and brings its schema up to
    /// date (several replicas starting at once take turns: the migrator holds an advisory lock).
    /// The portal's own user may not create schemas: the database's admin makes its schema,
    /// owned by it. The platform's tables (calendar, history, registry) are the operator's to
    /// make; until it has, the pages that need them say the service is unavailable.
    pub async fn connect(url: &str) -> Result<Self, PortalError> {
        let options = PgConnectOptions::from_str(url).map_err(PortalError::Database)?;
        let mut first = options.connect().await.map_err(PortalError::Database)?;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regnamespace($1)::text")
            .bind(SCHEMA)
            .fetch_one(&mut first)
            .await
            .map_err(PortalError::Database)?;
        if exists.is_none() {
            sqlx::query(&format!("CREATE SCHEMA {SCHEMA}"))
                .execute(&mut first)
                .await
                .map_err(|e| {
                    PortalError::Migration(format!(
                        "the schema {SCHEMA} does not exist and this user cannot make it ({e}); \
                         as the database's admin: CREATE SCHEMA {SCHEMA} AUTHORIZATION <the \
                         portal's user> (README: \"The portal's database user\")"
                    ))
                })?;
        }
        warn_if_mighty(&mut first).await;
        first.close().await.map_err(PortalError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.options([("search_path", SCHEMA)]))
            .await
            .map_err(PortalError::Database)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| PortalError::Migration(e.to_string()))?;
        Ok(Self {
            pool,
            url: url.to_owned(),
        })
    }

    /// The platform PostgreSQL's URL, for connections that log in as a deal instead.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection pool, for the calendar's bookings beside the accounts.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores a new account; the caller creates its Company in the same breath (see `signup`).
    pub async fn create(
        &self,
        email: &str,
        company: &str,
        password: &str,
    ) -> Result<Result<(), SignUpRefused>, PortalError> {
        let hashed = hash(password.to_owned()).await?;
        let result =
            sqlx::query("INSERT INTO accounts (email, company, password_hash) VALUES ($1, $2, $3)")
                .bind(email.trim().to_lowercase())
                .bind(company)
                .bind(hashed)
                .execute(&self.pool)
                .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Ok(Err(if e.constraint() == Some("accounts_pkey") {
                    SignUpRefused::EmailTaken
                } else {
                    SignUpRefused::CompanyTaken
                }))
            }
            Err(e) => Err(PortalError::Database(e)),
        }
    }

    /// Removes an account whose Company could not be made.
    pub async fn forget(&self, email: &str) -> Result<(), PortalError> {
        sqlx::query("DELETE FROM accounts WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .execute(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        Ok(())
    }

    /// Checks a password for `email`, typed at `client`. Failures are counted per client and
    /// email (`LOCK_AFTER` in `LOCK_FOR` hold that client back) and per email from everywhere
    /// (`LOCK_AFTER_FROM_ANYWHERE`), whether or not the account exists, so a hold says nothing
    /// about which emails have accounts and no one client can lock a company out. While held, even
    /// the right password waits; a right one clears the client's count.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Account, SignInRefused>, PortalError> {
        let email = email.trim().to_lowercase();
        // The client's length first: no client and email pair can spell another's key.
        let mine = format!("signin-failed:{}:{client}:{email}", client.len());
        let anywhere = format!("signin-failed-any:{email}");
        if let Some(until) = self.held(&mine, LOCK_AFTER, now).await? {
            return Ok(Err(SignInRefused::Locked { until }));
        }
        if let Some(until) = self.held(&anywhere, LOCK_AFTER_FROM_ANYWHERE, now).await? {
            return Ok(Err(SignInRefused::LockedEverywhere { until }));
        }
        let row = sqlx::query("SELECT company, password_hash FROM accounts WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        let right = match &row {
            Some(row) => matches(password.to_owned(), row.get("password_hash")).await,
            None => {
                // As long as a real check, so timing tells nothing either.
                matches(password.to_owned(), DECOY.to_owned()).await;
                false
            }
        };
        if let (true, Some(row)) = (right, row) {
            sqlx::query("DELETE FROM counters WHERE key = $1")
                .bind(&mine)
                .execute(&self.pool)
                .await
                .map_err(PortalError::Database)?;
            return Ok(Ok(Account {
                email,
                company: row.get("company"),
            }));
        }
        self.within_limit(&anywhere, u32::MAX, LOCK_FOR, now)
            .await?;
        self.within_limit(&mine, u32::MAX, LOCK_FOR, now).await?;
        Ok(Err(match self.held(&mine, LOCK_AFTER, now).await? {
            Some(until) => SignInRefused::Locked { until },
            None => SignInRefused::Wrong,
        }))
    }

    /// Until when the failures counted under `key` hold sign-ins back, if they have reached
    /// `limit` within `LOCK_FOR`.
    async fn held(
        &self,
        key: &str,
        limit: i32,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, PortalError> {
        sqlx::query_scalar(
            "SELECT window_start + $4 FROM counters \
             WHERE key = $1 AND count >= $2 AND window_start > $3 - $4",
        )
        .bind(key)
        .bind(limit)
        .bind(now)
        .bind(LOCK_FOR)
        .fetch_optional(&self.pool)
        .await
        .map_err(PortalError::Database)
    }

    /// Sets a new password, clears the lock and ends every session of the account.
    pub async fn set_password(&self, email: &str, password: &str) -> Result<(), PortalError> {
        let hashed = hash(password.to_owned()).await?;
        let mut tx = self.pool.begin().await.map_err(PortalError::Database)?;
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, password_changed_at = now() WHERE email = $1",
        )
        .bind(email)
        .bind(hashed)
        .execute(&mut *tx)
        .await
        .map_err(PortalError::Database)?;
        sqlx::query("DELETE FROM sessions WHERE email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await
            .map_err(PortalError::Database)?;
        // Every hold on the account's sign-ins goes with the old password.
        sqlx::query(
            "DELETE FROM counters WHERE key = 'signin-failed-any:' || $1 \
             OR (key LIKE 'signin-failed:%' AND right(key, length($1) + 1) = ':' || $1)",
        )
        .bind(email)
        .execute(&mut *tx)
        .await
        .map_err(PortalError::Database)?;
        tx.commit().await.map_err(PortalError::Database)
    }

    /// The account of a company, if it has one.
    pub async fn of_company(&self, company: &str) -> Result<Option<Account>, PortalError> {
        let email: Option<String> =
            sqlx::query_scalar("SELECT email FROM accounts WHERE company = $1")
                .bind(company)
                .fetch_optional(&self.pool)
                .await
                .map_err(PortalError::Database)?;
        Ok(email.map(|email| Account {
            email,
            company: company.to_owned(),
        }))
    }

    /// Starts a session: returns its token (for the cookie) and its form token.
    pub async fn start_session(
        &self,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<(String, String), PortalError> {
        let (token, csrf) = (random_token(43), random_token(32));
        sqlx::query(
            "INSERT INTO sessions (token_hash, email, csrf, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash(&token))
        .bind(&account.email)
        .bind(&csrf)
        .bind(now + SESSION_TTL)
        .execute(&self.pool)
        .await
        .map_err(PortalError::Database)?;
        Ok((token, csrf))
    }

    pub async fn session(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, PortalError> {
        let row = sqlx::query(
            "SELECT s.email, s.csrf, a.company FROM sessions s JOIN accounts a USING (email)
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash(token))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(PortalError::Database)?;
        Ok(row.map(|row| Session {
            account: Account {
                email: row.get("email"),
                company: row.get("company"),
            },
            csrf: row.get("csrf"),
        }))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), PortalError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        Ok(())
    }

    /// Counts one event under `key` in a fixed window; false once `limit` is passed. Shared by
    /// every replica, so a limit holds however many serve.
    pub async fn within_limit(
        &self,
        key: &str,
        limit: u32,
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, PortalError> {
        let count: i32 = sqlx::query_scalar(
            "INSERT INTO counters (key, window_start, count) VALUES ($1, $2, 1)
             ON CONFLICT (key) DO UPDATE SET
                count = CASE WHEN counters.window_start <= $2 - $3 THEN 1 ELSE counters.count + 1 END,
                window_start = CASE WHEN counters.window_start <= $2 - $3 THEN $2
                                    ELSE counters.window_start END
             RETURNING count",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.pool)
        .await
        .map_err(PortalError::Database)?;
        Ok(count as i64 <= i64::from(limit))
    }

    /// Marks a reset token used; false when it already was.
    pub async fn use_reset(&self, token: &str, company: &str) -> Result<bool, PortalError> {
        let inserted = sqlx::query(
            "INSERT INTO used_resets (token_hash, company) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(token_hash(token))
        .bind(company)
        .execute(&self.pool)
        .await
        .map_err(PortalError::Database)?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Whether a reset token was used already.
    pub async fn reset_used(&self, token: &str) -> Result<bool, PortalError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM used_resets WHERE token_hash = $1")
                .bind(token_hash(token))
                .fetch_optional(&self.pool)
                .await
                .map_err(PortalError::Database)?;
        Ok(found.is_some())
    }

    /// The company of every account.
    pub async fn companies(&self) -> Result<Vec<String>, PortalError> {
        sqlx::query_scalar("SELECT company FROM accounts ORDER BY company")
            .fetch_all(&self.pool)
            .await
            .map_err(PortalError::Database)
    }

    /// Deletes a company's account, its sessions with it.
    pub async fn forget_company(&self, company: &str) -> Result<(), PortalError> {
        sqlx::query("DELETE FROM accounts WHERE company = $1")
            .bind(company)
            .execute(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        Ok(())
    }

    /// Drops expired sessions and quiet counters.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<(), PortalError> {
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        sqlx::query("DELETE FROM counters WHERE window_start < $1")
            .bind(now - chrono::Duration::days(1))
            .execute(&self.pool)
            .await
            .map_err(PortalError::Database)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_must_be_long_and_not_the_email() {
        assert!(password_problem("short", "a@b.test")
            .unwrap()
            .contains("12 to 128"));
        assert!(password_problem("a@b.test.long", "A@B.test.long").is_some());
        assert_eq!(password_problem("correct horse battery", "a@b.test"), None);
    }

    #[test]
    fn tokens_are_stored_as_hashes() {
        let hash = token_hash("abc");
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, token_hash("abd"));
    }

    #[tokio::test]
    async fn the_decoy_parses_so_unknown_emails_cost_a_real_check() {
        assert!(PasswordHash::new(DECOY).is_ok());
        assert!(!matches("anything".into(), DECOY.into()).await);
    }
}
