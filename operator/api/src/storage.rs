//! Where a deal's data lives in the platform PostgreSQL: one schema per deal, named here so the
//! operator (which makes it), the storefront (which fills it) and the portal (which exports its
//! orders) agree.
//!
//! A deal's schema is named from its UID (`td_<32 hex digits>`), which no other deal can have,
//! and recorded in `status.schema`. Deals set up before that keep the name they were given by
//! `schema_name`; the registry (`timedeal_platform.deal_schemas`) refuses to hand a name to a
//! second deal either way, and holds each role's password: the operator and the portal work in a
//! deal's schema only through [`connect_as_deal`], never as the platform user.

use crate::TimeDeal;

/// The schema (and login role) a new deal gets: from its UID, so one-to-one by construction.
/// `None` for a UID that is not one (the API server never makes such).
pub fn schema_for_uid(uid: &str) -> Option<String> {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("td_{}", hex.to_ascii_lowercase()))
}

/// The schema of `deal`, as the operator chooses it: the recorded one; else, for a deal an older
/// release already built (it pinned its images, or got past approval), the name that release
/// used; else one from its UID.
pub fn schema_of(deal: &TimeDeal) -> Option<String> {
    let status = deal.status.as_ref();
    if let Some(recorded) = status.and_then(|s| s.schema.clone()) {
        return Some(recorded);
    }
    let set_up_before = status.is_some_and(|s| {
        s.pinned.is_some() || s.phase.is_some_and(|p| p != crate::Phase::PendingApproval)
    });
    if set_up_before {
        return Some(schema_name(
            deal.metadata.namespace.as_deref()?,
            deal.metadata.name.as_deref()?,
        ));
    }
    schema_for_uid(deal.metadata.uid.as_deref()?)
}

/// Whether `schema` is a name this module could have made: the only kind quoted into SQL.
pub fn is_plain_schema(schema: &str) -> bool {
    schema.len() <= 63
        && schema.starts_with("td_")
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// `td_<namespace>_<name>` in lowercase letters, digits and underscores, as releases before
/// `schema_for_uid` named schemas. Not one-to-one (`-` and `_` both become `_`, long names keep a
/// 48-bit hash), which is why new deals are named from their UID instead.
pub fn schema_name(namespace: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect()
    };
    let full = format!("td_{}_{}", clean(namespace), clean(name));
    if full.len() <= 63 {
        return full;
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let hash = fnv1a(format!("{namespace}/{name}").as_bytes());
    format!("{}_{:012x}", &full[..50], hash & 0xffff_ffff_ffff)
}

/// Which deal each role and schema was made for, and the role's password: a name is handed out
/// once, and the platform works in a deal's schema only by logging in as that deal (see
/// [`connect_as_deal`]). Readable by the platform user alone, who may reset those passwords
/// anyway.
pub const REGISTRY_DDL: [&str; 3] = [
    "CREATE SCHEMA IF NOT EXISTS timedeal_platform",
    "CREATE TABLE IF NOT EXISTS timedeal_platform.deal_schemas (\
     schema text PRIMARY KEY, uid text NOT NULL, namespace text NOT NULL, name text NOT NULL, \
     claimed_at timestamptz NOT NULL DEFAULT now())",
    "ALTER TABLE timedeal_platform.deal_schemas ADD COLUMN IF NOT EXISTS password text",
];

/// Every table the platform keeps beside the deals' schemas (the registry, the calendar's
/// bookings, the figures' history), made by the operator when it starts; each statement is
/// idempotent.
pub fn platform_ddl() -> impl Iterator<Item = &'static str> {
    REGISTRY_DDL
        .into_iter()
        .chain(crate::calendar::BOOKINGS_DDL)
        .chain(crate::stats::SAMPLES_DDL)
}

/// Whether `role` is a name that may be quoted into SQL: lowercase letters, digits and
/// underscores, at most 63, not starting with a digit.
pub fn is_plain_role(role: &str) -> bool {
    (1..=63).contains(&role.len())
        && !role.starts_with(|c: char| c.is_ascii_digit())
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses a `--portal-database-role` flag: empty (no grants), or a plain role name.
pub fn parse_portal_role(given: &str) -> Result<String, String> {
    if given.is_empty() {
        return Ok(String::new());
    }
    if !is_plain_role(given) {
        return Err(format!(
            "{given:?} is not a PostgreSQL role name the platform uses: lowercase letters, digits \
             and underscores, at most 63, such as timedeal_portal"
        ));
    }
    // PUBLIC is every role; pg_ names are PostgreSQL's own; td_ names are deals'.
    if given == "public" || given.starts_with("pg_") || given.starts_with("td_") {
        return Err(format!(
            "{given:?} is not the portal's own role: PUBLIC is every role, pg_ roles are \
             PostgreSQL's and td_ roles are deals'; use a name such as timedeal_portal"
        ));
    }
    Ok(given.to_owned())
}

/// What the rental portal's own database user may do in the platform's tables, granted by the
/// operator (who owns them) after [`platform_ddl`]: read each deal's registered login (to work
/// in a deal's schema as that deal, see [`connect_as_deal`]) and nothing else of the registry,
/// keep the calendar's bookings, and read the figures' history. Its accounts live in a schema
/// of its own; it owns no deal's objects and is no member of any deal's role. `role` must be
/// [`is_plain_role`].
pub fn portal_grants(role: &str) -> Vec<String> {
    debug_assert!(is_plain_role(role));
    vec![
        format!("GRANT USAGE ON SCHEMA timedeal_platform TO \"{role}\""),
        format!(
            "GRANT SELECT (schema, uid, password) ON timedeal_platform.deal_schemas TO \"{role}\""
        ),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON timedeal_platform.bookings TO \"{role}\""),
        format!("GRANT SELECT ON timedeal_platform.figure_samples TO \"{role}\""),
    ]
}

/// Why the platform could not act as a deal.
#[cfg(feature = "postgres")]
#[derive(Debug, thiserror::Error)]
pub enum DealConnectionError {
    #[error("{0:?} is not a deal's schema name")]
    NotPlain(String),
    #[error("the platform PostgreSQL URL is not one: {0}")]
    Url(String),
    #[error(
        "the deal's schema {0} exists but its role's login is not registered yet (the operator \
         registers it when it next sets the deal up); try again shortly"
    )]
    NotReady(String),
    #[error("the platform PostgreSQL refused: {0}")]
    Database(#[from] sqlx::Error),
}

/// How long one piece of work as a deal may wait for a lock, and run: a deal holding its own
/// tables locked stalls only its own export, never the platform's connections.
#[cfg(feature = "postgres")]
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub lock_timeout: std::time::Duration,
    pub statement_timeout: std::time::Duration,
}

/// A connection of its own that logs in as the deal whose schema is `schema` and whose UID is
/// `uid`, with the password the registry holds for it (read through `platform`, a connection of
/// the platform user, whose URL `platform_url` gives the server and database). `None` when the
/// registry has no such deal: not set up yet, or the schema is another deal's.
///
/// Whatever the deal defined in its schema (triggers, views, functions) then runs with the
/// deal's own rights and nothing more: there is no higher role on the connection to return to,
/// and the connection is closed after the work, so nothing it sets outlives it. pg_catalog comes
/// first on the search path, so the deal's functions never stand in for built-in ones.
#[cfg(feature = "postgres")]
pub async fn connect_as_deal(
    platform: &sqlx::PgPool,
    platform_url: &str,
    schema: &str,
    uid: &str,
    bounds: Bounds,
) -> Result<Option<sqlx::PgConnection>, DealConnectionError> {
    use sqlx::ConnectOptions;
    if !is_plain_schema(schema) {
        return Err(DealConnectionError::NotPlain(schema.to_owned()));
    }
    let registry: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('timedeal_platform.deal_schemas')::text")
            .fetch_one(platform)
            .await?;
    let password: Option<Option<String>> = match registry {
        None => None,
        Some(_) => {
            sqlx::query_scalar(
                "SELECT password FROM timedeal_platform.deal_schemas \
                 WHERE schema = $1 AND uid = $2",
            )
            .bind(schema)
            .bind(uid)
            .fetch_optional(platform)
            .await?
        }
    };
    let Some(Some(password)) = password else {
        // No login for it: a deal never set up has no schema either. One that has a schema
        // (set up by an older release, or mid-setup) is not ready, which is not "no orders".
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regnamespace($1)::text")
            .bind(schema)
            .fetch_one(platform)
            .await?;
        return match exists {
            Some(_) => Err(DealConnectionError::NotReady(schema.to_owned())),
            None => Ok(None),
        };
    };
    let millis = |d: std::time::Duration| format!("{}ms", d.as_millis());
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(platform_url)
        .map_err(|e| DealConnectionError::Url(e.to_string()))?
        .username(schema)
        .password(&password)
        .options([
            ("search_path", format!("pg_catalog,{schema}")),
            ("lock_timeout", millis(bounds.lock_timeout)),
            ("statement_timeout", millis(bounds.statement_timeout)),
        ]);
    Ok(Some(options.connect().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_role_names_are_quoted_into_grants() {
        assert_eq!(parse_portal_role("").unwrap(), "");
        assert_eq!(
            parse_portal_role("timedeal_portal").unwrap(),
            "timedeal_portal"
        );
        for bad in [
            "Portal",
            "portal\"; DROP",
            "9lives",
            "a-b",
            &"p".repeat(64),
            "public",
            "pg_read_all_data",
            "td_0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse_portal_role(bad).is_err(), "{bad:?}");
        }
        assert!(portal_grants("timedeal_portal")
            .iter()
            .all(|sql| sql.ends_with("TO \"timedeal_portal\"")));
    }

    #[test]
    fn schema_names_are_unique_and_valid() {
        assert_eq!(
            schema_name("acme-audio", "winter-headphones"),
            "td_acme_audio_winter_headphones"
        );
        let long = schema_name(&"n".repeat(60), &"d".repeat(60));
        assert_eq!(long.len(), 63);
        assert_ne!(long, schema_name(&"n".repeat(60), &"d".repeat(61)));
    }

    fn deal(namespace: &str, name: &str, uid: &str) -> TimeDeal {
        let mut td: TimeDeal = serde_yaml::from_str(include_str!(
            "../../../manifests/samples/timedeal-minimal.yaml"
        ))
        .unwrap();
        td.metadata.name = Some(name.into());
        td.metadata.namespace = Some(namespace.into());
        td.metadata.uid = Some(uid.into());
        td
    }

    #[test]
    fn names_that_collided_by_namespace_and_name_get_schemas_of_their_own() {
        // `acme`/`audio-sale` and `acme-audio`/`sale` shared one schema by name.
        assert_eq!(
            schema_name("acme", "audio-sale"),
            schema_name("acme-audio", "sale")
        );
        let a = deal("acme", "audio-sale", "0b7d3c52-8f4e-4f0e-9a55-3c1f2a7e9d10");
        let b = deal("acme-audio", "sale", "5e2a91c0-1d3b-4c8e-b7a2-9f0e6d4c3b21");
        let (a, b) = (schema_of(&a).unwrap(), schema_of(&b).unwrap());
        assert_ne!(a, b);
        assert_eq!(a, "td_0b7d3c528f4e4f0e9a553c1f2a7e9d10");
        assert!(is_plain_schema(&a) && is_plain_schema(&b));
    }

    #[test]
    fn a_deal_keeps_the_schema_it_has() {
        let mut td = deal("acme", "sale", "0b7d3c52-8f4e-4f0e-9a55-3c1f2a7e9d10");
        // A request that only waited for approval was never set up: it gets one of its own.
        td.status = Some(crate::TimeDealStatus {
            observed_generation: Some(3),
            phase: Some(crate::Phase::PendingApproval),
            ..Default::default()
        });
        assert_eq!(
            schema_of(&td).unwrap(),
            "td_0b7d3c528f4e4f0e9a553c1f2a7e9d10"
        );
        td.status.as_mut().unwrap().pinned = Some(Default::default());
        assert_eq!(schema_of(&td).unwrap(), "td_acme_sale");
        td.status.as_mut().unwrap().schema = Some("td_recorded".into());
        assert_eq!(schema_of(&td).unwrap(), "td_recorded");
        assert_eq!(schema_for_uid("not-a-uid"), None);
        assert!(!is_plain_schema("td_x\"; drop"));
    }
}
