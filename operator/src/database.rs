//! The platform PostgreSQL, as the operator uses it: one role per deal that owns the deal's
//! schema and nothing else, so a tenant's Secret holds only credentials to its own orders; and
//! the final figures of every deleted deal, kept where they outlive the hour an Event lasts.
//!
//! The operator connects with the platform URL (from its Secret), which must be allowed to create
//! roles and schemas. Role and schema names come from `timedeal_api::storage` (lowercase letters,
//! digits and underscores) and passwords from `generate` (letters and digits), so quoting them
//! into statements is safe.

use std::{collections::HashMap, str::FromStr, sync::Mutex, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool, Row,
};

/// Why the platform PostgreSQL could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("the platform PostgreSQL URL is not a URL: {0}")]
    Url(String),
    #[error("cannot reach the platform PostgreSQL: {0}")]
    Connect(String),
    #[error("{what}: {error}")]
    Statement { what: String, error: String },
    #[error("the platform PostgreSQL did not answer within {0:?}")]
    Timeout(Duration),
    #[error(
        "the PostgreSQL role and schema {schema} belong to the deal {owner} (uid {uid}); they are \
         not handed to another deal"
    )]
    Taken {
        schema: String,
        owner: String,
        uid: String,
    },
    #[error("{0}")]
    AsDeal(#[from] timedeal_api::storage::DealConnectionError),
    #[error(
        "the deal's schema {schema} still holds {left} rows of personal data after the erase \
         (a trigger or rule of the deal's own may keep them); retrying"
    )]
    NotErased { schema: String, left: i64 },
}

/// The deal a role and schema are set up for.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

use timedeal_api::storage::REGISTRY_DDL;

/// The one call deadline of every statement.
const CALL: Duration = Duration::from_secs(5);

/// Connections to the platform PostgreSQL, made on first use and again when its URL changes
/// (a rotated password).
#[derive(Default)]
pub struct Database {
    pool: Mutex<Option<(String, PgPool)>>,
}

/// The figures a deal ended with, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalFigures {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub figures: serde_json::Value,
}

impl Database {
    pub fn new() -> Self {
        Self::default()
    }

    async fn pool(&self, url: &str) -> Result<PgPool, DatabaseError> {
        if let Some((current, pool)) = self.pool.lock().expect("pool lock").as_ref() {
            if current == url {
                return Ok(pool.clone());
            }
        }
        let options =
            PgConnectOptions::from_str(url).map_err(|e| DatabaseError::Url(e.to_string()))?;
        // Every statement names its schema; nothing on the search path but the catalog, so no
        // function a deal or the portal could create stands in for a built-in one.
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(CALL)
            .connect_with(options.options([("search_path", "pg_catalog")]))
            .await
            .map_err(|e| DatabaseError::Connect(e.to_string()))?;
        *self.pool.lock().expect("pool lock") = Some((url.to_owned(), pool.clone()));
        Ok(pool)
    }

    /// Makes `role` a login role with `password` that owns the schema of the same name and
    /// everything in it, and nothing else, for `owner` alone: a name registered to another deal
    /// is refused. Idempotent: run again, it sets the password again and takes over what an
    /// older release created in the schema as the platform user.
    pub async fn ensure_tenant(
        &self,
        url: &str,
        role: &str,
        password: &str,
        owner: Owner<'_>,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        // Roles are the server's, not the database's: a setup racing another database's on the
        // same role can fail on a catalog row; once more settles it.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.setup_tenant(&pool, role, password, owner).await {
                Err(error @ DatabaseError::Taken { .. }) => return Err(error),
                Err(error) if attempt < 3 => {
                    tracing::debug!(%error, "setting up a deal's role again");
                }
                other => return other,
            }
        }
    }

    async fn setup_tenant(
        &self,
        pool: &PgPool,
        role: &str,
        password: &str,
        owner: Owner<'_>,
    ) -> Result<(), DatabaseError> {
        if !timedeal_api::storage::is_plain_schema(role) {
            return Err(
                timedeal_api::storage::DealConnectionError::NotPlain(role.to_owned()).into(),
            );
        }
        let work = async {
            let mut tx = pool.begin().await.map_err(statement("begin"))?;
            // One deal's setup at a time, across operator replicas and restarts.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(role)
                .execute(&mut *tx)
                .await
                .map_err(statement("lock"))?;
            for sql in REGISTRY_DDL {
                sqlx::query(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(statement("create the schema registry"))?;
            }
            sqlx::query(
                "INSERT INTO timedeal_platform.deal_schemas (schema, uid, namespace, name) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (schema) DO NOTHING",
            )
            .bind(role)
            .bind(owner.uid)
            .bind(owner.namespace)
            .bind(owner.name)
            .execute(&mut *tx)
            .await
            .map_err(statement("register the deal's schema"))?;
            let (uid, namespace, name): (String, String, String) = sqlx::query_as(
                "SELECT uid, namespace, name FROM timedeal_platform.deal_schemas WHERE schema = $1",
            )
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(statement("read the schema's registration"))?;
            if uid != owner.uid {
                return Err(DatabaseError::Taken {
                    schema: role.to_owned(),
                    owner: format!("{namespace}/{name}"),
                    uid,
                });
            }
            // What the platform logs in as to work in the deal's schema (`connect_as_deal`).
            sqlx::query(
                "UPDATE timedeal_platform.deal_schemas SET password = $2 WHERE schema = $1",
            )
            .bind(role)
            .bind(password)
            .execute(&mut *tx)
            .await
            .map_err(statement("register the role's password"))?;
            // Roles belong to the whole server, so another database's operator may create the
            // same one meanwhile: whoever comes second sets the password instead.
            // Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS in ALTER ROLE, and
            // the platform user need not be one: an existing role is checked for them instead.
            let attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION \
                              NOBYPASSRLS";
            let again = "LOGIN NOCREATEDB NOCREATEROLE NOINHERIT";
            let statements = [
                format!(
                    "DO $$ BEGIN \
                     CREATE ROLE \"{role}\" {attributes} PASSWORD '{password}'; \
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN \
                     ALTER ROLE \"{role}\" {again} PASSWORD '{password}'; END $$"
                ),
                // The platform user must be able to hand the schema over.
                format!("GRANT \"{role}\" TO CURRENT_USER"),
                format!("CREATE SCHEMA IF NOT EXISTS \"{role}\" AUTHORIZATION \"{role}\""),
                format!("ALTER SCHEMA \"{role}\" OWNER TO \"{role}\""),
                format!("REVOKE ALL ON SCHEMA \"{role}\" FROM PUBLIC"),
            ];
            for sql in &statements {
                sqlx::query(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(statement(&format!("setting up role {role}")))?;
            }
            let escalated: bool = sqlx::query_scalar(
                "SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_roles \
                 WHERE rolname = $1",
            )
            .bind(role)
            .fetch_one(&mut *tx)
            .await
            .map_err(statement("read the role's attributes"))?;
            if escalated {
                return Err(DatabaseError::Statement {
                    what: format!("setting up role {role}"),
                    error: "it is a superuser, or may replicate or bypass row security; a deal's \
                            role may not, and the operator will not hand it to a deal"
                        .into(),
                });
            }
            // Tables and sequences an older release made as the platform user.
            let owned_elsewhere = sqlx::query(
                "SELECT c.relname, c.relkind::text AS kind FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'S', 'v', 'p') \
                 AND pg_get_userbyid(c.relowner) <> $1",
            )
            .bind(role)
            .fetch_all(&mut *tx)
            .await
            .map_err(statement("list the schema's objects"))?;
            for row in owned_elsewhere {
                let name: String = row.get("relname");
                let kind = match row.get::<String, _>("kind").as_str() {
                    "S" => "SEQUENCE",
                    "v" => "VIEW",
                    _ => "TABLE",
                };
                let sql = format!("ALTER {kind} \"{role}\".\"{name}\" OWNER TO \"{role}\"");
                sqlx::query(&sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(statement(&format!("hand {name} to {role}")))?;
            }
            tx.commit().await.map_err(statement("commit"))?;
            Ok(())
        };
        bounded(work).await
    }

    /// Deletes the deal's personal data from its schema (see `timedeal_api::personal_data`):
    /// retention is over, and the storefront that would have done it is scaled to zero. Runs
    /// logged in as the deal's own role (`connect_as_deal`), so nothing the deal defined there
    /// runs with more rights; the tables are counted afterwards, so a trigger that keeps rows
    /// is found out rather than taken for an erase.
    pub async fn erase_personal_data(
        &self,
        url: &str,
        schema: &str,
        uid: &str,
    ) -> Result<(), DatabaseError> {
        use timedeal_api::storage::{connect_as_deal, Bounds};
        let pool = self.pool(url).await?;
        let (url, schema, uid) = (url.to_owned(), schema.to_owned(), uid.to_owned());
        // A task of its own: a fresh connection's handshake runs deep, and the reconcile that
        // asks is deep already.
        let work = tokio::spawn(bounded(async move {
            let schema = schema.as_str();
            let bounds = Bounds {
                lock_timeout: CALL,
                statement_timeout: CALL,
            };
            let Some(mut db) = connect_as_deal(&pool, &url, schema, &uid, bounds).await? else {
                // Never set up: the deal took no order, so it holds no personal data.
                return Ok(());
            };
            let mut tx = sqlx::Connection::begin(&mut db)
                .await
                .map_err(statement("begin"))?;
            sqlx::query(timedeal_api::personal_data::ERASE)
                .execute(&mut *tx)
                .await
                .map_err(statement(&format!("delete personal data in {schema}")))?;
            // Counted as the deal sees them: only plain tables without row security may be
            // counted on (a view, or a table hiding rows from its owner, could show none).
            let mut left = 0;
            for table in timedeal_api::personal_data::TABLES {
                let kind: Option<(String, bool)> = sqlx::query_as(
                    "SELECT c.relkind::text, c.relrowsecurity FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2",
                )
                .bind(schema)
                .bind(table)
                .fetch_optional(&mut *tx)
                .await
                .map_err(statement("look for the table"))?;
                match kind {
                    None => {}
                    Some((kind, false)) if kind == "r" => {
                        let rows: i64 = sqlx::query_scalar(&format!(
                            "SELECT count(*) FROM \"{schema}\".\"{table}\""
                        ))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(statement(&format!("count {table}")))?;
                        left += rows;
                    }
                    Some(_) => {
                        return Err(DatabaseError::Statement {
                            what: format!("check the erase in {schema}"),
                            error: format!(
                                "{table} is not a plain table without row security; the erase \
                                 cannot be checked"
                            ),
                        })
                    }
                }
            }
            if left > 0 {
                return Err(DatabaseError::NotErased {
                    schema: schema.to_owned(),
                    left,
                });
            }
            tx.commit().await.map_err(statement("commit"))?;
            Ok(())
        }));
        work.await.unwrap_or_else(|e| {
            Err(DatabaseError::Statement {
                what: "delete personal data".into(),
                error: e.to_string(),
            })
        })
    }

    /// The deal is gone: its role may no longer log in. Its schema (the orders) stays. A role
    /// registered to another deal is left as it is.
    pub async fn retire_tenant(
        &self,
        url: &str,
        role: &str,
        uid: &str,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            for sql in REGISTRY_DDL {
                sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .map_err(statement("create the schema registry"))?;
            }
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) \
                 AND NOT EXISTS (SELECT 1 FROM timedeal_platform.deal_schemas \
                   WHERE schema = $1 AND uid <> $2)",
            )
            .bind(role)
            .bind(uid)
            .fetch_one(&pool)
            .await
            .map_err(statement("look for the role"))?;
            if exists {
                sqlx::query(&format!("ALTER ROLE \"{role}\" NOLOGIN"))
                    .execute(&pool)
                    .await
                    .map_err(statement(&format!("retire role {role}")))?;
            }
            Ok(())
        })
        .await
    }

    /// Makes the platform's own tables (`timedeal_api::storage::platform_ddl`) and, when
    /// `portal_role` is not empty, grants the portal's database user what it needs in them
    /// (`timedeal_api::storage::portal_grants`). Idempotent.
    pub async fn prepare_platform(
        &self,
        url: &str,
        portal_role: &str,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            let mut tx = pool.begin().await.map_err(statement("begin"))?;
            // Operator replicas starting together take turns.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('timedeal_platform'))")
                .execute(&mut *tx)
                .await
                .map_err(statement("lock"))?;
            for sql in timedeal_api::storage::platform_ddl() {
                sqlx::query(sql)
                    .execute(&mut *tx)
                    .await
                    .map_err(statement("create the platform's tables"))?;
            }
            // The platform's schema must be the platform user's own: one someone else made first
            // could hold objects that run as whoever uses them.
            let owner: String = sqlx::query_scalar(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'timedeal_platform'",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(statement("read the platform schema's owner"))?;
            let me: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(&mut *tx)
                .await
                .map_err(statement("read the platform user"))?;
            if owner != me {
                return Err(DatabaseError::Statement {
                    what: "check the platform's schema".into(),
                    error: format!(
                        "the schema timedeal_platform belongs to {owner}, not the platform user \
                         {me}; as the database's admin, ALTER SCHEMA timedeal_platform OWNER TO \
                         {me} (and its tables), after checking what is in it"
                    ),
                });
            }
            if !portal_role.is_empty() {
                let refused = |why: String| DatabaseError::Statement {
                    what: format!("grant the portal's role {portal_role:?}"),
                    error: why,
                };
                if timedeal_api::storage::parse_portal_role(portal_role).is_err() {
                    return Err(refused("not a role name the portal may have".into()));
                }
                if portal_role == me {
                    return Err(refused(
                        "it is the platform's own user: give the portal a user of its own".into(),
                    ));
                }
                let mighty: Option<bool> = sqlx::query_scalar(
                    "SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles \
                     WHERE rolname = $1",
                )
                .bind(portal_role)
                .fetch_optional(&mut *tx)
                .await
                .map_err(statement("read the portal's role"))?;
                match mighty {
                    None => {
                        return Err(refused(
                            "no such role: create it as the README's \"The portal's database \
                             user\" shows"
                                .into(),
                        ))
                    }
                    Some(true) => {
                        return Err(refused(
                            "it is a superuser, may create roles or bypasses row security: the \
                             portal's user needs none of that"
                                .into(),
                        ))
                    }
                    Some(false) => {}
                }
                for sql in timedeal_api::storage::portal_grants(portal_role) {
                    sqlx::query(&sql).execute(&mut *tx).await.map_err(|error| {
                        DatabaseError::Statement {
                            what: format!(
                                "grant the portal's role {portal_role} its rights (create the \
                                 role first, as the README's \"The portal's database user\" \
                                 shows)"
                            ),
                            error: error.to_string(),
                        }
                    })?;
                }
            }
            tx.commit().await.map_err(statement("commit"))?;
            Ok(())
        })
        .await
    }

    /// Keeps a deal's booking in `timedeal_platform.bookings`, where the portal's calendar reads it.
    pub async fn book(
        &self,
        url: &str,
        namespace: &str,
        name: &str,
        booking: &timedeal_api::calendar::Booking,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            prepare_bookings(&pool).await?;
            sqlx::query(timedeal_api::calendar::UPSERT_BOOKING)
                .bind(&booking.key)
                .bind(namespace)
                .bind(name)
                .bind(booking.from)
                .bind(booking.until)
                .bind(booking.replicas)
                .bind(booking.approved)
                .execute(&pool)
                .await
                .map_err(statement("record the deal's booking"))?;
            Ok(())
        })
        .await
    }

    /// Keeps one reading of a deal's figures, for the portal's chart of the sale.
    pub async fn sample(
        &self,
        url: &str,
        uid: &str,
        sample: &timedeal_api::stats::Sample,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            for sql in timedeal_api::stats::SAMPLES_DDL {
                sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .map_err(statement("create the figure samples table"))?;
            }
            sqlx::query(
                "INSERT INTO timedeal_platform.figure_samples \
                 (uid, at, sold, remaining, waiting, confirmed) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(uid)
            .bind(sample.at)
            .bind(sample.sold)
            .bind(sample.remaining)
            .bind(sample.waiting)
            .bind(sample.confirmed)
            .execute(&pool)
            .await
            .map_err(statement("record a figures sample"))?;
            Ok(())
        })
        .await
    }

    /// Frees a deleted deal's booking.
    pub async fn unbook(&self, url: &str, uid: &str) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            prepare_bookings(&pool).await?;
            sqlx::query("DELETE FROM timedeal_platform.bookings WHERE uid = $1")
                .bind(uid)
                .execute(&pool)
                .await
                .map_err(statement("free the deal's booking"))?;
            Ok(())
        })
        .await
    }

    /// Keeps a deleted deal's final figures in `timedeal_platform.final_figures`, once per deal.
    pub async fn record_final_figures(
        &self,
        url: &str,
        record: &FinalFigures,
    ) -> Result<(), DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            for sql in [
                "CREATE SCHEMA IF NOT EXISTS timedeal_platform",
                "CREATE TABLE IF NOT EXISTS timedeal_platform.final_figures (\
                 uid text PRIMARY KEY, namespace text NOT NULL, name text NOT NULL, \
                 recorded_at timestamptz NOT NULL DEFAULT now(), figures jsonb NOT NULL)",
            ] {
                sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .map_err(statement("create the final figures table"))?;
            }
            sqlx::query(
                "INSERT INTO timedeal_platform.final_figures (uid, namespace, name, figures) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (uid) DO UPDATE SET figures = EXCLUDED.figures",
            )
            .bind(&record.uid)
            .bind(&record.namespace)
            .bind(&record.name)
            .bind(sqlx::types::Json(&record.figures))
            .execute(&pool)
            .await
            .map_err(statement("record the final figures"))?;
            Ok(())
        })
        .await
    }

    /// The recorded final figures of a deal, by uid.
    pub async fn final_figures(
        &self,
        url: &str,
        uid: &str,
    ) -> Result<Option<FinalFigures>, DatabaseError> {
        let pool = self.pool(url).await?;
        bounded(async {
            let row = sqlx::query(
                "SELECT namespace, name, uid, figures FROM timedeal_platform.final_figures \
                 WHERE uid = $1",
            )
            .bind(uid)
            .fetch_optional(&pool)
            .await
            .map_err(statement("read the final figures"))?;
            Ok(row.map(|row| FinalFigures {
                namespace: row.get("namespace"),
                name: row.get("name"),
                uid: row.get("uid"),
                figures: row
                    .get::<sqlx::types::Json<serde_json::Value>, _>("figures")
                    .0,
            }))
        })
        .await
    }
}

/// Creates the calendar's table when the portal has not yet.
async fn prepare_bookings(pool: &PgPool) -> Result<(), DatabaseError> {
    for sql in timedeal_api::calendar::BOOKINGS_DDL {
        sqlx::query(sql)
            .execute(pool)
            .await
            .map_err(statement("create the bookings table"))?;
    }
    Ok(())
}

fn statement(what: &str) -> impl Fn(sqlx::Error) -> DatabaseError + '_ {
    move |error| DatabaseError::Statement {
        what: what.to_owned(),
        error: error.to_string(),
    }
}

async fn bounded<T>(
    work: impl std::future::Future<Output = Result<T, DatabaseError>>,
) -> Result<T, DatabaseError> {
    tokio::time::timeout(CALL * 2, work)
        .await
        .unwrap_or(Err(DatabaseError::Timeout(CALL * 2)))
}

/// The platform URL with the deal's role and password in place of the platform user's: all a
/// storefront gets.
pub fn tenant_url(platform: &str, role: &str, password: &str) -> Result<String, DatabaseError> {
    let mut url = reqwest::Url::parse(platform).map_err(|e| DatabaseError::Url(e.to_string()))?;
    let invalid = |_| DatabaseError::Url("it cannot carry a user name".into());
    url.set_username(role).map_err(invalid)?;
    url.set_password(Some(password)).map_err(invalid)?;
    Ok(url.to_string())
}

/// Tenants already set up by this replica, by deal uid, with the platform URL they were set up
/// through: a reconcile repeats the setup only after a restart or a rotated platform URL.
#[derive(Default)]
pub struct Ensured(Mutex<HashMap<String, String>>);

impl Ensured {
    pub fn contains(&self, uid: &str, fingerprint: &str) -> bool {
        self.0
            .lock()
            .expect("ensured lock")
            .get(uid)
            .is_some_and(|f| f == fingerprint)
    }

    pub fn insert(&self, uid: &str, fingerprint: &str) {
        self.0
            .lock()
            .expect("ensured lock")
            .insert(uid.to_owned(), fingerprint.to_owned());
    }

    pub fn forget(&self, uid: &str) {
        self.0.lock().expect("ensured lock").remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_url_carries_only_the_deals_role() {
        let url = tenant_url(
            "postgres://timedeal:platform-secret@db.platform:6432/timedeal?sslmode=require",
            "td_acme_audio_winter_headphones",
            "s3cret",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://td_acme_audio_winter_headphones:s3cret@db.platform:6432/timedeal?sslmode=require"
        );
        assert!(!url.contains("platform-secret"));
        assert!(tenant_url("not a url", "r", "p").is_err());
    }
}
