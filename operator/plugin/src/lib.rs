//! `kubectl timedeal`: what a platform admin asks of a deal, answered from the API server.
//!
//! - `status DEAL`: phase, conditions, figures, pins, children and recent Events on one screen;
//! - `report DEAL`: the figures the deal ended with (or has so far);
//! - `approve DEAL`, `suspend DEAL`, `resume DEAL`: the spec edits an admin makes, with a line
//!   saying what happens next;
//! - `companies`, `approve COMPANY`: the companies that signed up, and letting one in;
//! - `reset-password COMPANY`: a one-time link for a company that lost its password;
//! - `calendar [DAY]`: what is booked, hour by hour, against the platform's capacity.
//!
//! Reading and writing are in [`Plugin`]; what is printed is built by pure functions from what
//! was read, so tests check the screens without a terminal.

pub mod screens;

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    events::v1::Event,
    networking::v1::Ingress,
    policy::v1::PodDisruptionBudget,
};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    Client,
};
use serde_json::json;
use timedeal_api::{
    company::{RESET_ANNOTATION, RESET_AT_ANNOTATION},
    Company, TimeDeal,
};

/// Why a command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no TimeDeal {name} in namespace {namespace}; `kubectl get td -A` lists them")]
    NotFound { namespace: String, name: String },
    #[error("no Company or TimeDeal named {name} (in namespace {namespace}); `kubectl timedeal companies` and `kubectl get td -A` list them")]
    NothingNamed { namespace: String, name: String },
    #[error("both a Company and a TimeDeal (in namespace {namespace}) are named {name}; say which: `company/{name}` or `deal/{name}`")]
    Ambiguous { namespace: String, name: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
}

fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
    let what = what.into();
    move |source| PluginError::Api {
        what,
        source: Box::new(source),
    }
}

/// Everything `status` shows, as read.
pub struct Observed {
    pub deal: TimeDeal,
    pub children: Vec<screens::Child>,
    pub events: Vec<Event>,
}

/// The plugin's calls, against one namespace.
pub struct Plugin {
    client: Client,
    namespace: String,
}

impl Plugin {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
        }
    }

    fn deals(&self) -> Api<TimeDeal> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn deal(&self, name: &str) -> Result<TimeDeal, PluginError> {
        self.deals()
            .get_opt(name)
            .await
            .map_err(api(format!("reading TimeDeal {}/{name}", self.namespace)))?
            .ok_or_else(|| PluginError::NotFound {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
            })
    }

    /// The deal, its children and its recent Events.
    pub async fn observe(&self, name: &str) -> Result<Observed, PluginError> {
        let deal = self.deal(name).await?;
        let labels = ListParams::default().labels(&format!("timedeal.dev/deal={name}"));
        let mut children = Vec::new();
        macro_rules! list {
            ($kind:ty, $describe:path) => {
                let listed = Api::<$kind>::namespaced(self.client.clone(), &self.namespace)
                    .list(&labels)
                    .await
                    .map_err(api(format!("listing the children of {name}")))?;
                children.extend(listed.items.iter().map($describe));
            };
        }
        list!(Deployment, screens::deployment);
        list!(StatefulSet, screens::stateful_set);
        list!(HorizontalPodAutoscaler, screens::autoscaler);
        list!(PodDisruptionBudget, screens::disruption_budget);
        list!(Ingress, screens::ingress);
        let events = Api::<Event>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
            .map_err(api("listing Events"))?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("TimeDeal") && r.name.as_deref() == Some(name)
                })
            })
            .collect();
        Ok(Observed {
            deal,
            children,
            events,
        })
    }

    /// Sets one field of the spec, and returns the deal as stored.
    async fn set(&self, name: &str, field: &str, value: bool) -> Result<TimeDeal, PluginError> {
        self.deal(name).await?;
        self.deals()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {field: value}})),
            )
            .await
            .map_err(api(format!(
                "setting spec.{field} of TimeDeal {}/{name}",
                self.namespace
            )))
    }

    fn companies_api(&self) -> Api<Company> {
        Api::all(self.client.clone())
    }

    /// Every Company.
    pub async fn companies(&self) -> Result<Vec<Company>, PluginError> {
        Ok(self
            .companies_api()
            .list(&ListParams::default())
            .await
            .map_err(api("listing Companies"))?
            .items)
    }

    /// Approves a company or a deal: `company/NAME` (or `co/NAME`), `deal/NAME` (or `td/NAME`),
    /// or a bare name that only one of them has.
    pub async fn approve_any(&self, target: &str) -> Result<String, PluginError> {
        match target.split_once('/') {
            Some(("company" | "companies" | "co", name)) => {
                return self.approve_company(name).await
            }
            Some(("deal" | "timedeal" | "td", name)) => return self.approve(name).await,
            _ => {}
        }
        let company = self
            .companies_api()
            .get_opt(target)
            .await
            .map_err(api(format!("reading Company {target}")))?;
        let deal = self
            .deals()
            .get_opt(target)
            .await
            .map_err(api(format!("reading TimeDeal {}/{target}", self.namespace)))?;
        match (company, deal) {
            (Some(_), Some(_)) => Err(PluginError::Ambiguous {
                namespace: self.namespace.clone(),
                name: target.to_owned(),
            }),
            (Some(_), None) => self.approve_company(target).await,
            (None, Some(_)) => self.approve(target).await,
            (None, None) => Err(PluginError::NothingNamed {
                namespace: self.namespace.clone(),
                name: target.to_owned(),
            }),
        }
    }

    /// Approves a company: the operator makes its namespace, and its deal requests may run.
    pub async fn approve_company(&self, name: &str) -> Result<String, PluginError> {
        let company = self
            .companies_api()
            .get_opt(name)
            .await
            .map_err(api(format!("reading Company {name}")))?
            .ok_or_else(|| PluginError::NothingNamed {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
            })?;
        if company.spec.approved {
            return Ok(format!("company {name} is already approved"));
        }
        self.companies_api()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"approved": true}})),
            )
            .await
            .map_err(api(format!("setting spec.approved of Company {name}")))?;
        Ok(format!(
            "company {name} approved: the operator makes its namespace {} now; its deal \
             requests still need `kubectl timedeal approve -n {} DEAL`",
            company.spec.namespace, company.spec.namespace
        ))
    }

    /// Every TimeDeal in the cluster.
    pub async fn all_deals(&self) -> Result<Vec<TimeDeal>, PluginError> {
        Ok(Api::<TimeDeal>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api("listing TimeDeals"))?
            .items)
    }

    /// The capacity the operator in `namespace` was given (`TIMEDEAL_CALENDAR_REPLICAS` of its
    /// Deployment), if it keeps a calendar and the Deployment can be read.
    pub async fn calendar_capacity(&self, namespace: &str) -> Option<i32> {
        let deployment = Api::<Deployment>::namespaced(self.client.clone(), namespace)
            .get_opt("timedeal-operator")
            .await
            .ok()??;
        deployment
            .spec?
            .template
            .spec?
            .containers
            .first()?
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == "TIMEDEAL_CALENDAR_REPLICAS")?
            .value
            .as_deref()?
            .parse::<i32>()
            .ok()
            .filter(|c| *c > 0)
    }

    /// Puts a one-time reset token on a Company and returns the link the company opens.
    pub async fn reset_password(
        &self,
        company: &str,
        portal_url: &str,
        token: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, PluginError> {
        self.companies_api()
            .get_opt(company)
            .await
            .map_err(api(format!("reading Company {company}")))?
            .ok_or_else(|| PluginError::NothingNamed {
                namespace: self.namespace.clone(),
                name: company.to_owned(),
            })?;
        self.companies_api()
            .patch(
                company,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    RESET_ANNOTATION: token,
                    RESET_AT_ANNOTATION: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }}})),
            )
            .await
            .map_err(api(format!("annotating Company {company}")))?;
        Ok(format!(
            "{}/reset/{company}/{token}\nworks once, for 24 hours; send it to the company's contact",
            portal_url.trim_end_matches('/')
        ))
    }

    /// Approves a requested deal; says so when it already was.
    pub async fn approve(&self, name: &str) -> Result<String, PluginError> {
        if self.deal(name).await?.spec.approved {
            return Ok(format!("{name} is already approved"));
        }
        self.set(name, "approved", true).await?;
        Ok(format!(
            "{name} approved: the operator builds its storefront now; `kubectl timedeal status \
             {name}` shows it come up"
        ))
    }

    pub async fn suspend(&self, name: &str, suspend: bool) -> Result<String, PluginError> {
        let before = self.deal(name).await?;
        if before.spec.suspend == suspend {
            let state = if suspend {
                "suspended"
            } else {
                "not suspended"
            };
            return Ok(format!("{name} is already {state}"));
        }
        self.set(name, "suspend", suspend).await?;
        Ok(if suspend {
            format!(
                "{name} suspended: its storefronts stop admitting within seconds; the phase turns \
                 Suspended once every replica has"
            )
        } else {
            format!("{name} resumed: its storefronts admit shoppers again within seconds")
        })
    }
}
