//! The rental request form: what a company types, turned into an unapproved TimeDeal, checked by
//! the CRD's own rules (`timedeal_api::validation`), with every error placed next to its field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::{distributions::Alphanumeric, Rng};
use serde::Deserialize;
use serde_json::json;
use timedeal_api::{money, validation, Company, TimeDeal};

use super::capacity::{self, Limits, Suggestion};

/// What was typed, kept as text so a refused form comes back exactly as it was sent. Fields the
/// form does not offer (approval, images, capacity, ...) are not read, whatever is posted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RequestForm {
    pub csrf: String,
    pub product_name: String,
    pub description: String,
    pub image_url: String,
    pub list_price: String,
    pub deal_price: String,
    pub currency: String,
    pub stock: String,
    pub per_user_limit: String,
    pub category: String,
    pub fulfilment: String,
    pub date: String,
    pub time: String,
    pub utc_offset: String,
    pub duration_minutes: String,
    pub peak_shoppers: String,
    pub host: String,
}

/// Currencies the form offers.
pub const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "KRW", "JPY"];

/// UTC offsets the form offers, `-12:00` to `+14:00` by the half hour where one is in use.
pub fn utc_offsets() -> Vec<String> {
    let mut offsets = Vec::new();
    for quarter in (-48..=56).step_by(2) {
        let minutes: i32 = quarter * 15;
        let sign = if minutes < 0 { '-' } else { '+' };
        offsets.push(format!(
            "{sign}{:02}:{:02}",
            minutes.abs() / 60,
            minutes.abs() % 60
        ));
    }
    offsets
}

/// Durations the form offers, in minutes.
pub const DURATIONS: &[i64] = &[30, 60, 90, 120, 180, 240, 360, 720];

/// Errors by form field name; `""` holds those that belong to no single field.
pub type FieldErrors = BTreeMap<&'static str, Vec<String>>;

/// Where each field of the TimeDeal is typed on the form.
const FIELDS: &[(&str, &str)] = &[
    ("spec.product.name", "product_name"),
    ("spec.product.description", "description"),
    ("spec.product.imageUrl", "image_url"),
    ("spec.product.listPrice", "list_price"),
    ("spec.product.dealPrice", "deal_price"),
    ("spec.product.currency", "currency"),
    ("spec.product.stock", "stock"),
    ("spec.product.perUserLimit", "per_user_limit"),
    ("spec.product.category", "category"),
    ("spec.product.fulfilment", "fulfilment"),
    ("spec.schedule.start", "date"),
    ("spec.schedule.end", "duration_minutes"),
    ("spec.ingress.host", "host"),
    ("spec.capacity", "peak_shoppers"),
    ("spec.queue", "peak_shoppers"),
];

fn form_field(path: &str) -> &'static str {
    FIELDS
        .iter()
        .find(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}.")))
        .map_or("", |(_, field)| field)
}

/// A request the form accepted: the TimeDeal to create and the capacity it was given.
#[derive(Debug)]
pub struct Accepted {
    pub deal: TimeDeal,
    pub suggestion: Suggestion,
}

/// Earliest start the form accepts: the admin needs time to approve and the operator to build.
pub const LEAD_TIME_MINUTES: i64 = 60;

impl RequestForm {
    /// The capacity suggested for what was typed as the peak, if it reads as a number.
    pub fn suggestion(&self, limits: Limits) -> Option<Suggestion> {
        let peak = self.peak_shoppers.trim().parse::<i64>().ok()?;
        (peak >= 1).then(|| capacity::suggest(peak, limits))
    }

    /// Reads the form into an unapproved TimeDeal in the company's namespace, or every error.
    /// The company, its namespace and its contact come from the signed-in company, never from
    /// the form.
    pub fn accept(
        &self,
        company: &Company,
        limits: Limits,
        now: DateTime<Utc>,
    ) -> Result<Accepted, FieldErrors> {
        let mut errors = FieldErrors::new();
        let mut refuse = |field: &'static str, message: String| {
            errors.entry(field).or_default().push(message);
        };
        let currency = self.currency.trim().to_uppercase();
        if !CURRENCIES.contains(&currency.as_str()) {
            refuse(
                "currency",
                format!("choose one of {}", CURRENCIES.join(", ")),
            );
        }
        let mut price = |field: &'static str, text: &str| match money::parse(text, &currency) {
            Ok(amount) => Some(amount),
            Err(message) => {
                refuse(field, message);
                None
            }
        };
        let list_price = price("list_price", &self.list_price);
        let deal_price = price("deal_price", &self.deal_price);
        let mut whole =
            |field: &'static str, text: &str, example: &str| match text.trim().parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    refuse(field, format!("enter a whole number such as {example}"));
                    None
                }
            };
        let stock = whole("stock", &self.stock, "500");
        let per_user_limit = whole("per_user_limit", &self.per_user_limit, "2");
        let peak = whole("peak_shoppers", &self.peak_shoppers, "20000");
        let duration = whole("duration_minutes", &self.duration_minutes, "60");
        if let Some(stock) = stock.filter(|s| *s > company.spec.quotas.max_stock) {
            refuse(
                "stock",
                format!(
                    "your company may put at most {} units on sale in one deal (you asked for {stock})",
                    company.spec.quotas.max_stock
                ),
            );
        }
        let start = DateTime::parse_from_rfc3339(&format!(
            "{}T{}:00{}",
            self.date.trim(),
            self.time.trim(),
            self.utc_offset.trim()
        ))
        .map(|t| t.with_timezone(&Utc));
        match &start {
            Err(_) => refuse(
                "date",
                "enter a date (2026-12-01), a time (12:00) and a UTC offset".into(),
            ),
            Ok(start) if *start < now + chrono::Duration::minutes(LEAD_TIME_MINUTES) => refuse(
                "date",
                format!("the deal must start at least {LEAD_TIME_MINUTES} minutes from now"),
            ),
            Ok(_) => {}
        }
        if let Some(minutes) = duration {
            if !DURATIONS.contains(&minutes) {
                let choices: Vec<String> = DURATIONS.iter().map(i64::to_string).collect();
                refuse(
                    "duration_minutes",
                    format!("choose one of {} minutes", choices.join(", ")),
                );
            }
        }
        if let Some(peak) = peak {
            if !(1..=capacity::MAX_PEAK_SHOPPERS).contains(&peak) {
                refuse(
                    "peak_shoppers",
                    format!(
                        "expect between 1 and {} shoppers",
                        capacity::MAX_PEAK_SHOPPERS
                    ),
                );
            }
        }
        let (
            Some(list_price),
            Some(deal_price),
            Some(stock),
            Some(per_user_limit),
            Some(peak),
            Some(minutes),
            Ok(start),
        ) = (
            list_price,
            deal_price,
            stock,
            per_user_limit,
            peak,
            duration,
            start,
        )
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        // Checked by the CRD's own rules below, which name the field.
        let category = match self.category.trim() {
            "" => "general".to_owned(),
            typed => typed.to_lowercase(),
        };
        let fulfilment = match self.fulfilment.trim() {
            "" => "digital",
            chosen => chosen,
        };

        let suggestion = capacity::suggest(peak, limits);
        let namespace = &company.spec.namespace;
        let name = deal_name(&self.product_name);
        let image_url = Some(self.image_url.trim()).filter(|u| !u.is_empty());
        let value = json!({
            "apiVersion": "timedeal.dev/v1alpha1",
            "kind": "TimeDeal",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"timedeal.dev/requested-by": "rental-form"},
            },
            "spec": {
                "company": {
                    "name": company.spec.display_name,
                    "contactEmail": company.spec.contact_email,
                },
                "approved": false,
                "product": {
                    "name": self.product_name.trim(),
                    "description": self.description.trim(),
                    "imageUrl": image_url,
                    "listPrice": list_price,
                    "dealPrice": deal_price,
                    "currency": currency,
                    "stock": stock,
                    "perUserLimit": per_user_limit,
                    "category": category,
                    "fulfilment": fulfilment,
                },
                "schedule": {
                    "start": start.to_rfc3339(),
                    "end": (start + chrono::Duration::minutes(minutes)).to_rfc3339(),
                },
                "queue": {
                    "admissionRate": suggestion.admission_rate,
                    "maxActive": suggestion.max_active,
                },
                "capacity": {
                    "minReplicas": suggestion.min_replicas,
                    "peakReplicas": suggestion.peak_replicas,
                    "maxReplicas": suggestion.max_replicas,
                },
                "ingress": {"host": self.host.trim().to_lowercase()},
            }
        });
        let mut value = value;
        if image_url.is_none() {
            value["spec"]["product"]
                .as_object_mut()
                .expect("product is an object")
                .remove("imageUrl");
        }
        match validation::from_value(&value) {
            Ok(deal) => Ok(Accepted { deal, suggestion }),
            Err(error) => {
                let mut errors = FieldErrors::new();
                for broken in error.field_errors() {
                    errors
                        .entry(form_field(&broken.field))
                        .or_default()
                        .push(broken.message.clone());
                }
                if errors.is_empty() {
                    errors.entry("").or_default().push(error.to_string());
                }
                Err(errors)
            }
        }
    }
}

/// Lower-case letters, digits and single dashes, from any text.
fn slug(text: &str, max: usize) -> String {
    let mut slug = String::new();
    for c in text.trim().to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= max {
            break;
        }
    }
    slug.trim_end_matches('-').to_owned()
}

/// A Company's name from its display name: a DNS label of letters, digits and dashes.
pub fn company_name(display_name: &str) -> String {
    let slug = slug(display_name, 40);
    if slug.is_empty() {
        "company".into()
    } else {
        slug
    }
}

/// The company's namespace: `td-<company>`, so a company never lands in a system namespace.
pub fn namespace_for(company: &str) -> String {
    format!("td-{company}")
}

/// `<product>-<5 random>`: starts with a letter, at most 46 characters (the CRD's name rule), and
/// two requests for the same product never collide.
pub fn deal_name(product: &str) -> String {
    let mut base = slug(product, 35);
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base = format!("deal-{base}").trim_end_matches('-').to_owned();
    }
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(5)
        .map(char::from)
        .collect();
    format!("{base}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-21T09:00:00Z".parse().unwrap()
    }

    fn acme() -> Company {
        Company::new(
            "acme-audio",
            timedeal_api::CompanySpec {
                display_name: "ACME Audio".into(),
                contact_email: "sales@acme-audio.example".into(),
                namespace: "td-acme-audio".into(),
                approved: true,
                quotas: Default::default(),
                hosts: Vec::new(),
            },
        )
    }

    pub fn valid() -> RequestForm {
        RequestForm {
            csrf: "token".into(),
            product_name: "NC-700 headphones".into(),
            description: "Over-ear, 30 hours of battery.".into(),
            image_url: "https://cdn.acme-audio.example/nc700.png".into(),
            list_price: "299.00".into(),
            deal_price: "99".into(),
            currency: "USD".into(),
            stock: "500".into(),
            per_user_limit: "2".into(),
            category: "audio".into(),
            fulfilment: "shipping".into(),
            date: "2026-12-01".into(),
            time: "12:00".into(),
            utc_offset: "+09:00".into(),
            duration_minutes: "60".into(),
            peak_shoppers: "30000".into(),
            host: "Headphones.Deals.Example.com".into(),
        }
    }

    #[test]
    fn a_valid_form_makes_an_unapproved_deal_in_the_company_namespace() {
        let accepted = valid().accept(&acme(), Limits::default(), now()).unwrap();
        let deal = accepted.deal;
        assert_eq!(deal.metadata.namespace.as_deref(), Some("td-acme-audio"));
        let name = deal.metadata.name.unwrap();
        assert!(
            name.starts_with("nc-700-headphones-") && name.len() == 23,
            "{name}"
        );
        let spec = deal.spec;
        assert!(!spec.approved);
        assert_eq!(spec.company.name, "ACME Audio");
        assert_eq!(spec.company.contact_email, "sales@acme-audio.example");
        assert_eq!(spec.product.list_price, 29900);
        assert_eq!(spec.product.deal_price, 9900);
        assert_eq!(
            spec.schedule.start,
            "2026-12-01T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            spec.schedule.end - spec.schedule.start,
            chrono::Duration::minutes(60)
        );
        assert_eq!(spec.ingress.host, "headphones.deals.example.com");
        assert_eq!(
            spec.capacity.peak_replicas,
            accepted.suggestion.peak_replicas
        );
        assert_eq!(spec.queue.admission_rate, 100);
        assert_eq!(spec.images, None);
    }

    #[test]
    fn category_and_delivery_reach_the_deal_and_their_rules_their_fields() {
        let accepted = valid().accept(&acme(), Limits::default(), now()).unwrap();
        let product = &accepted.deal.spec.product;
        assert_eq!(product.category, "audio");
        assert_eq!(product.fulfilment, timedeal_api::Fulfilment::Shipping);

        let mut form = valid();
        form.category = "Home & Kitchen".into();
        form.deal_price = "0".into(); // free is for coupons only
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(errors["category"][0].contains("lowercase"), "{errors:?}");
        assert!(errors["deal_price"][0].contains("coupon"), "{errors:?}");

        form.category = String::new();
        form.fulfilment = "coupon".into();
        let accepted = form.accept(&acme(), Limits::default(), now()).unwrap();
        assert_eq!(accepted.deal.spec.product.category, "general");
        assert_eq!(accepted.deal.spec.product.deal_price, 0);
    }

    #[test]
    fn each_error_lands_on_its_field() {
        let mut form = valid();
        form.deal_price = "399".into(); // above the list price: a CEL rule
        form.stock = "lots".into(); // not a number
        form.host = "not a host".into();
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(errors["stock"][0].contains("whole number"), "{errors:?}");
        // Parsing stops the build before the CRD rules run; fix it and they report.
        form.stock = "500".into();
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(
            errors["deal_price"][0].contains("must not be higher"),
            "{errors:?}"
        );
        assert!(errors["host"][0].contains("DNS name"), "{errors:?}");
        assert!(!errors.contains_key(""), "{errors:?}");
    }

    #[test]
    fn stock_over_the_companys_quota_is_refused_on_its_field() {
        let mut form = valid();
        form.stock = "100001".into();
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(
            errors["stock"][0].contains("at most 100000 units"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_start_in_the_past_or_too_soon_is_refused() {
        let mut form = valid();
        form.date = "2026-11-21".into();
        form.time = "09:30".into();
        form.utc_offset = "+00:00".into();
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(
            errors["date"][0].contains("at least 60 minutes"),
            "{errors:?}"
        );
        form.time = "nine".into();
        let errors = form.accept(&acme(), Limits::default(), now()).unwrap_err();
        assert!(errors["date"][0].contains("enter a date"), "{errors:?}");
    }

    #[test]
    fn names_are_valid_kubernetes_names() {
        assert_eq!(company_name("ACME Audio, Inc."), "acme-audio-inc");
        assert_eq!(company_name("???"), "company");
        assert_eq!(namespace_for("acme-audio-inc"), "td-acme-audio-inc");
        let name = deal_name("2024 Édition spéciale!!");
        assert!(name.starts_with("deal-2024-dition-sp-ciale-"), "{name}");
        let long = deal_name(&"x".repeat(200));
        assert!(long.len() <= 46, "{long}");
        assert_ne!(deal_name("a"), deal_name("a"));
    }

    #[test]
    fn offsets_cover_the_world() {
        let offsets = utc_offsets();
        assert_eq!(offsets.first().map(String::as_str), Some("-12:00"));
        assert_eq!(offsets.last().map(String::as_str), Some("+14:00"));
        assert!(offsets.contains(&"+05:30".to_owned()));
        assert!(offsets.contains(&"+00:00".to_owned()));
    }
}
