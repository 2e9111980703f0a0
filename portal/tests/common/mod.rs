//! Shared by the portal's integration tests.
#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc};

use chrono::{DateTime, Utc};
use kube::{
    api::{Api, Patch, PatchParams},
    Client,
};
use kube_fake_client::ClientBuilder;
use regex::Regex;
use serde_json::json;
use timedeal_api::{clock::ManualClock, Company, TimeDeal};
use timedeal_portal::{
    accounts::Accounts, capacity::Limits, client::TrustedProxies, keys::SigningKey, Portal,
    RateLimits,
};

pub use timedeal_testkit::kube_api::status_kind;

/// "Now" for the portal's tests: ten days before the deals they request.
pub fn portal_now() -> DateTime<Utc> {
    "2026-11-21T09:00:00Z".parse().unwrap()
}

pub const SESSION_KEY: &[u8] = b"portal-session-key-for-tests-0123456789";

/// One real PostgreSQL per test binary, and a database of its own for each portal.
pub async fn platform_database() -> String {
    timedeal_testkit::PostgresServer::shared_database("portal").unwrap()
}

/// The rental portal on a free loopback port, over an in-memory Kubernetes API (Companies
/// served as the API server does) and a real PostgreSQL.
pub struct PortalServer {
    pub client: Client,
    pub url: String,
    pub database: String,
    pub clock: Arc<ManualClock>,
    pub portal: Arc<Portal>,
}

impl PortalServer {
    pub async fn start(submissions_per_minute: u32) -> Self {
        Self::start_behind(submissions_per_minute, "").await
    }

    /// Behind the given trusted proxies (see `client`).
    pub async fn start_behind(submissions_per_minute: u32, trusted_proxies: &str) -> Self {
        let client = ClientBuilder::new()
            .with_resource::<TimeDeal>()
            .with_status_subresource::<status_kind::TimeDeal>()
            .build()
            .await
            .unwrap();
        let client = timedeal_testkit::kube_api::with_cluster_scoped(client);
        let database = platform_database().await;
        Self::serve(client, database, submissions_per_minute, trusted_proxies).await
    }

    /// Over a given client: the in-memory API seen through a wrapper (see `start`).
    pub async fn over(wrap: impl FnOnce(Client) -> Client) -> Self {
        let client = ClientBuilder::new()
            .with_resource::<TimeDeal>()
            .with_status_subresource::<status_kind::TimeDeal>()
            .build()
            .await
            .unwrap();
        let client = wrap(timedeal_testkit::kube_api::with_cluster_scoped(client));
        let database = platform_database().await;
        Self::serve(client, database, 10, "").await
    }

    /// Another replica: the same API and database, its own process state.
    pub async fn replica(&self, submissions_per_minute: u32) -> Self {
        Self::serve(
            self.client.clone(),
            self.database.clone(),
            submissions_per_minute,
            "",
        )
        .await
    }

    async fn serve(
        client: Client,
        database: String,
        submissions_per_minute: u32,
        trusted_proxies: &str,
    ) -> Self {
        let clock = Arc::new(ManualClock::at(portal_now()));
        let portal = Arc::new(Portal {
            client: client.clone(),
            accounts: Accounts::connect(&portal_user(&database).await)
                .await
                .unwrap(),
            key: SigningKey::new(SESSION_KEY.to_vec()).unwrap(),
            limits: Limits::default(),
            rate: RateLimits {
                submissions_per_minute,
                ..RateLimits::default()
            },
            clock: clock.clone(),
            proxies: TrustedProxies::parse(trusted_proxies).unwrap(),
            secure_cookies: false,
            calendar_replicas: Some(40),
            hosts: timedeal_api::hosts::HostRules {
                company_suffix: Some("companies.example.com".into()),
                reserved: vec!["deals.example.com".into(), "directory.example.com".into()],
            },
            deal_connections: std::sync::Arc::new(tokio::sync::Semaphore::new(
                timedeal_portal::DEAL_CONNECTIONS,
            )),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = portal.clone();
        tokio::spawn(async move {
            let app =
                timedeal_portal::router(served).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap()
        });
        Self {
            client,
            url,
            database,
            clock,
            portal,
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Approves a company as an admin does (`kubectl timedeal approve`), giving it the hosts
    /// under deals.example.com.
    pub async fn approve(&self, company: &str) {
        Api::<Company>::all(self.client.clone())
            .patch(
                company,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"approved": true, "hosts": ["*.deals.example.com"]}}),
                ),
            )
            .await
            .unwrap();
    }

    /// Signs a company up and in, returning its browser; approved when asked.
    pub async fn company(&self, display_name: &str, email: &str, approved: bool) -> Browser {
        let browser = Browser::new();
        let response = browser.sign_up(self, display_name, email, PASSWORD).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        if approved {
            self.approve(&timedeal_portal::form::company_name(display_name))
                .await;
        }
        let response = browser.sign_in(self, email, PASSWORD).await;
        assert!(
            response.url().path() == "/deals",
            "signed in: {}",
            response.url()
        );
        browser
    }

    pub async fn deals(&self) -> Vec<TimeDeal> {
        Api::<TimeDeal>::all(self.client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
    }

    /// The schema and login role of the deal `name`, made and registered as the operator makes
    /// them, with the
    /// storefront's `migrations` run as the deal (so the deal owns its tables, as in a
    /// cluster). Answers the schema and a connection acting as the deal.
    pub async fn deal_schema(
        &self,
        name: &str,
        migrations: &[&str],
    ) -> (String, sqlx::PgConnection) {
        let deal = self
            .deals()
            .await
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
            .unwrap();
        let schema = timedeal_api::storage::schema_of(&deal).unwrap();
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&self.database)
            .await
            .unwrap();
        for sql in timedeal_api::storage::REGISTRY_DDL {
            sqlx::query(sql).execute(&mut db).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO timedeal_platform.deal_schemas (schema, uid, namespace, name, password) \
             VALUES ($1, $2, $3, $4, 'deal-password')",
        )
        .bind(&schema)
        .bind(deal.metadata.uid.as_deref().unwrap())
        .bind(deal.metadata.namespace.as_deref().unwrap())
        .bind(name)
        .execute(&mut db)
        .await
        .unwrap();
        sqlx::raw_sql(&format!(
            "{} SET ROLE \"{schema}\"; SET search_path TO \"{schema}\"; {}",
            timedeal_testkit::PostgresServer::deal_schema_sql(&schema),
            migrations.join("\n")
        ))
        .execute(&mut db)
        .await
        .unwrap();
        (schema, db)
    }

    pub async fn companies(&self) -> Vec<Company> {
        Api::<Company>::all(self.client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
    }
}

/// The portal's own database user, as a cluster has it: created by the database's admin as the
/// README shows (a login that owns its schema, nothing more), then granted its rights in the
/// platform's tables by the operator when it starts. Answers the portal's URL for `database`
/// (a URL of the platform's user).
pub async fn portal_user(database: &str) -> String {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(database)
        .await
        .unwrap();
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN CREATE ROLE {PORTAL_ROLE} LOGIN PASSWORD 'portal-password'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
         CREATE SCHEMA IF NOT EXISTS timedeal_portal AUTHORIZATION {PORTAL_ROLE};"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    timedeal_operator::database::Database::new()
        .prepare_platform(database, PORTAL_ROLE)
        .await
        .unwrap();
    let (scheme, rest) = database.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{PORTAL_ROLE}:portal-password@{host}")
}

/// The portal's database user in the tests.
pub const PORTAL_ROLE: &str = "timedeal_portal";

pub const PASSWORD: &str = "correct horse battery staple";

/// A browser: cookies kept, redirects followed.
pub struct Browser {
    pub http: reqwest::Client,
}

/// The form token on a page.
pub fn csrf_of(page: &str) -> String {
    Regex::new(r#"name="csrf" value="([A-Za-z0-9]+)""#)
        .unwrap()
        .captures(page)
        .map(|c| c[1].to_owned())
        .unwrap_or_default()
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap(),
        }
    }

    /// A browser at `address`, as a trusted proxy in front of the portal names it.
    pub fn at(address: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", address.parse().unwrap());
        Self {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    pub async fn page(&self, url: &str) -> (u16, String) {
        let response = self.http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Posts `fields` as they are (no token added).
    pub async fn post(
        &self,
        portal: &PortalServer,
        path: &str,
        fields: &[(&str, String)],
    ) -> reqwest::Response {
        self.http
            .post(portal.at(path))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Opens `form_path` for its token, then posts `fields` with it to `action`.
    pub async fn post_form(
        &self,
        portal: &PortalServer,
        form_path: &str,
        action: &str,
        fields: &[(&str, String)],
    ) -> reqwest::Response {
        let (_, page) = self.page(&portal.at(form_path)).await;
        let mut fields = fields.to_vec();
        fields.push(("csrf", csrf_of(&page)));
        self.http
            .post(portal.at(action))
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_up(
        &self,
        portal: &PortalServer,
        display_name: &str,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_form(
            portal,
            "/signup",
            "/signup",
            &[
                ("display_name", display_name.into()),
                ("email", email.into()),
                ("password", password.into()),
                ("confirm", password.into()),
            ],
        )
        .await
    }

    pub async fn sign_in(
        &self,
        portal: &PortalServer,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_form(
            portal,
            "/signin",
            "/signin",
            &[("email", email.into()), ("password", password.into())],
        )
        .await
    }

    /// Requests a deal through the form.
    pub async fn request(
        &self,
        portal: &PortalServer,
        fields: &[(&'static str, String)],
    ) -> reqwest::Response {
        self.post_form(portal, "/deals/new", "/deals", fields).await
    }
}

/// A complete, valid request as form fields.
pub fn valid_request() -> Vec<(&'static str, String)> {
    [
        ("product_name", "NC-700 headphones"),
        ("description", "Over-ear, 30 hours of battery."),
        ("image_url", "https://cdn.acme-audio.example/nc700.png"),
        ("list_price", "299.00"),
        ("deal_price", "99.00"),
        ("currency", "USD"),
        ("stock", "500"),
        ("per_user_limit", "2"),
        ("date", "2026-12-01"),
        ("time", "12:00"),
        ("utc_offset", "+09:00"),
        ("duration_minutes", "60"),
        ("peak_shoppers", "30000"),
        ("host", "headphones.deals.example.com"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}
