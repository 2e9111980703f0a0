//! The deal directory under the crowd that reloads it before a start: the `timedeal-directory`
//! binary over a folder of deals from many companies, asked for the whole page, and asked again
//! with the ETag it gave (a browser's or a CDN's revalidation, answered `304` with no body).

use std::{net::SocketAddr, path::Path, sync::Arc};

use chrono::{SecondsFormat, Utc};
use hyper::{header, Method};
use tempfile::TempDir;
use timedeal_testkit::Service;

use crate::{
    load::{self, Load, Outcome},
    Error,
};

/// Deals listed, spread over this many companies and four categories.
pub const DEALS: usize = 120;
const COMPANIES: usize = 24;

/// A running directory and the folder of deals it lists.
pub struct Directory {
    service: Service,
    _deals: TempDir,
    /// The page's ETag, as the directory gave it.
    pub etag: String,
}

fn deal(index: usize) -> String {
    // A third live, the rest upcoming over the next days: every state a crowd sees.
    let starts_in = (index as i64 % 3 - 1) * 3600 * (1 + index as i64 % 48);
    let start = Utc::now() + chrono::Duration::seconds(starts_in);
    let end = start + chrono::Duration::hours(2);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let category = ["audio", "kitchen", "food-drink", "outdoor"][index % 4];
    format!(
        r#"apiVersion: timedeal.dev/v1alpha1
kind: TimeDeal
metadata: {{ name: deal-{index}, namespace: company-{company} }}
spec:
  company: {{ name: Company {company}, contactEmail: sales@company-{company}.example }}
  approved: true
  product:
    name: Product {index}
    description: A product of company {company}, at a deep discount for two hours.
    listPrice: 29900
    dealPrice: 9900
    stock: 500
    category: {category}
  schedule: {{ start: "{start}", end: "{end}" }}
  ingress: {{ host: deal-{index}.deals.example.com }}
"#,
        company = index % COMPANIES,
        start = ts(start),
        end = ts(end),
    )
}

impl Directory {
    /// Starts `binary` over [`DEALS`] deals and reads the page's ETag.
    pub async fn start(binary: &Path) -> Result<Self, Error> {
        let deals = tempfile::tempdir().map_err(Error::io("make the directory's deal folder"))?;
        let text: Vec<String> = (0..DEALS).map(deal).collect();
        std::fs::write(deals.path().join("deals.yaml"), text.join("---\n"))
            .map_err(Error::io("write the directory's deals"))?;
        let service = Service::start(
            binary,
            &["--deals".into(), deals.path().as_os_str().to_owned()],
            &[("RUST_LOG", "warn".into())],
        )
        .map_err(|source| Error::Start {
            what: "the directory".into(),
            source,
        })?;
        let page = reqwest::get(format!("{}/", service.url()))
            .await
            .map_err(|source| Error::Http {
                what: "read the directory's page".into(),
                source,
            })?;
        let etag = page
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Unexpected("the directory's page has no ETag".into()))?
            .to_owned();
        let body = page.text().await.map_err(|source| Error::Http {
            what: "read the directory's page".into(),
            source,
        })?;
        if body.matches("class=\"deal").count() < DEALS / 2 {
            return Err(Error::Unexpected(format!(
                "the directory lists too few of its {DEALS} deals"
            )));
        }
        Ok(Self {
            service,
            _deals: deals,
            etag,
        })
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.service.port()))
    }

    /// The whole page, as a first visit gets it: every answer must be 200.
    pub async fn pages(&self, load: Load) -> Result<Outcome, Error> {
        let target = self.address();
        let outcome = load::run(
            target,
            load,
            "directory pages",
            Arc::new(move |_, _| load::empty(Method::GET, target, "/")),
        )
        .await?;
        outcome.expect_only("directory pages", &[200])?;
        Ok(outcome)
    }

    /// The page asked again with its ETag, as a reload does: every answer must be 304 (the
    /// listing did not change during the run).
    pub async fn revalidations(&self, load: Load) -> Result<Outcome, Error> {
        let target = self.address();
        let etag = self.etag.clone();
        let outcome = load::run(
            target,
            load,
            "directory revalidations",
            Arc::new(move |_, _| {
                let mut request = load::empty(Method::GET, target, "/");
                request.headers_mut().insert(
                    header::IF_NONE_MATCH,
                    etag.parse().expect("an ETag is a header value"),
                );
                request
            }),
        )
        .await?;
        outcome.expect_only("directory revalidations", &[304])?;
        Ok(outcome)
    }
}
