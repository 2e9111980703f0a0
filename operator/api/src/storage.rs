//! Where a deal's data lives in the platform PostgreSQL: one schema per deal, named here so the
//! operator (which makes it), the storefront (which fills it) and the portal (which exports its
//! orders) agree.
//!
//! A deal's schema is named from its UID (`td_<32 hex digits>`), which no other deal can have,
//! and recorded in `status.schema`. Deals set up before that keep the name they were given by
//! `schema_name`; the operator's registry (`timedeal_platform.deal_schemas`) refuses to hand a
//! name to a second deal either way.

use crate::TimeDeal;

/// The schema (and login role) a new deal gets: from its UID, so one-to-one by construction.
/// `None` for a UID that is not one (the API server never makes such).
pub fn schema_for_uid(uid: &str) -> Option<String> {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("td_{}", hex.to_ascii_lowercase()))
}

/// The schema of `deal`, as the operator chooses it: the recorded one; else, for a deal an older
/// release already set up (it has a status), the name that release used; else one from its UID.
pub fn schema_of(deal: &TimeDeal) -> Option<String> {
    let status = deal.status.as_ref();
    if let Some(recorded) = status.and_then(|s| s.schema.clone()) {
        return Some(recorded);
    }
    let set_up_before =
        status.is_some_and(|s| s.pinned.is_some() || s.observed_generation.is_some());
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

/// How a table is held while the platform works in a deal's schema: reading it, or writing it
/// (which also keeps anyone from adding a trigger, rule or constraint until the work commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Read,
    Write,
}

/// Anything in a deal's schema that would run code of the deal's making inside a platform
/// connection: functions, operators, triggers, rules, policies, views and other relations that
/// are not plain tables, domains and base types, and defaults, checks or indexes calling
/// functions that act on the session or the server ([`SESSION_CALLS`]; built-in functions leave
/// no dependency to follow, so their calls are read from the expressions). The migrations make
/// none of these. `$1` is the schema, `$2` is [`SESSION_CALLS`]; the answer is what was found,
/// or NULL.
pub const FOREIGN_CODE: &str = "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = $1) \
    SELECT string_agg(what, ', ' ORDER BY what) FROM ( \
      SELECT 'function ' || p.proname AS what FROM pg_proc p, s WHERE p.pronamespace = s.oid \
      UNION ALL SELECT 'operator ' || o.oprname FROM pg_operator o, s \
        WHERE o.oprnamespace = s.oid \
      UNION ALL SELECT 'trigger ' || t.tgname FROM pg_trigger t \
        JOIN pg_class c ON c.oid = t.tgrelid, s WHERE c.relnamespace = s.oid AND NOT t.tgisinternal \
      UNION ALL SELECT 'rule ' || r.rulename FROM pg_rewrite r \
        JOIN pg_class c ON c.oid = r.ev_class, s WHERE c.relnamespace = s.oid \
      UNION ALL SELECT 'policy ' || pol.polname FROM pg_policy pol \
        JOIN pg_class c ON c.oid = pol.polrelid, s WHERE c.relnamespace = s.oid \
      UNION ALL SELECT 'relation ' || c.relname FROM pg_class c, s \
        WHERE c.relnamespace = s.oid AND c.relkind NOT IN ('r', 'S', 'i') \
      UNION ALL SELECT 'type ' || t.typname FROM pg_type t, s WHERE t.typnamespace = s.oid \
        AND (t.typtype IN ('d', 'r', 'm', 'p') OR (t.typtype = 'b' AND t.typcategory <> 'A')) \
      UNION ALL SELECT 'default of ' || c.relname || '.' || a.attname FROM pg_attrdef d \
        JOIN pg_class c ON c.oid = d.adrelid \
        JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum, s \
        WHERE c.relnamespace = s.oid AND pg_get_expr(d.adbin, d.adrelid) ~* $2 \
      UNION ALL SELECT 'constraint ' || con.conname FROM pg_constraint con, s \
        WHERE con.connamespace = s.oid AND pg_get_constraintdef(con.oid) ~* $2 \
      UNION ALL SELECT 'index ' || i.relname FROM pg_index x \
        JOIN pg_class i ON i.oid = x.indexrelid, s \
        WHERE i.relnamespace = s.oid AND pg_get_indexdef(x.indexrelid) ~* $2 \
    ) found";

/// Calls of built-in functions that change the session (`set_config('role', …)` undoes a
/// `SET ROLE`) or reach the server's files and connections, as a PostgreSQL regular expression.
pub const SESSION_CALLS: &str =
    r"\m(set_config|dblink\w*|lo_\w+|pg_\w+|query_to_\w+|current_setting)\s*\(";

/// Why the platform would not act in a deal's schema.
#[cfg(feature = "postgres")]
#[derive(Debug, thiserror::Error)]
pub enum EnterError {
    #[error("{0:?} is not a deal's schema name")]
    NotPlain(String),
    #[error(
        "the deal's schema {schema} holds what the platform never made ({found}); nothing was run \
         in it. Remove them, or ask the platform admin"
    )]
    ForeignCode { schema: String, found: String },
    #[error("the platform PostgreSQL refused: {0}")]
    Database(#[from] sqlx::Error),
}

/// Makes the transaction `tx` act as the deal whose schema is `schema` (its own login role,
/// pg_catalog before the schema on the search path), holds `tables` as asked, and refuses when
/// the schema holds code the deal could have made to run with the platform's rights. Tables that
/// do not exist are passed over. Everything after this runs with the deal's rights alone.
#[cfg(feature = "postgres")]
pub async fn enter(
    tx: &mut sqlx::PgConnection,
    schema: &str,
    tables: &[(&str, Hold)],
) -> Result<(), EnterError> {
    if !is_plain_schema(schema) {
        return Err(EnterError::NotPlain(schema.to_owned()));
    }
    // `schema` is plain (checked above), so quoting it into statements is safe.
    for sql in [
        format!("SET LOCAL ROLE \"{schema}\""),
        format!("SET LOCAL search_path TO pg_catalog, \"{schema}\""),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await?;
    }
    for (table, hold) in tables {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("\"{schema}\".\"{table}\""))
            .fetch_one(&mut *tx)
            .await?;
        if exists.is_some() {
            let mode = match hold {
                Hold::Read => "ACCESS SHARE",
                Hold::Write => "ROW EXCLUSIVE",
            };
            sqlx::query(&format!(
                "LOCK TABLE \"{schema}\".\"{table}\" IN {mode} MODE"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    let found: Option<String> = sqlx::query_scalar(FOREIGN_CODE)
        .bind(schema)
        .bind(SESSION_CALLS)
        .fetch_one(&mut *tx)
        .await?;
    match found {
        Some(found) => Err(EnterError::ForeignCode {
            schema: schema.to_owned(),
            found,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        td.status = Some(crate::TimeDealStatus {
            observed_generation: Some(3),
            ..Default::default()
        });
        assert_eq!(schema_of(&td).unwrap(), "td_acme_sale");
        td.status.as_mut().unwrap().schema = Some("td_recorded".into());
        assert_eq!(schema_of(&td).unwrap(), "td_recorded");
        assert_eq!(schema_for_uid("not-a-uid"), None);
        assert!(!is_plain_schema("td_x\"; drop"));
    }
}
