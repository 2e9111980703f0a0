//! Delivery details: who receives a shipped or collected order, and where. They are personal
//! data, so they are checked before anything is reserved, kept in their own table beside the
//! order, never logged, and deleted as a whole when the deal's retention ends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use timedeal_api::Fulfilment;

use crate::{db::bounded, error::Error};

/// Who receives the order and, for shipping, where.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    /// The recipient's full name, 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A phone number the courier or the shop can call: 7 to 15 digits, optionally with a
    /// leading `+` and spaces, dashes, dots or parentheses between them.
    #[schema(
        min_length = 7,
        max_length = 30,
        pattern = r"^\s*\+?[ ().-]*([0-9][ ().-]*){7,15}\s*$"
    )]
    pub phone: String,
    /// Where to ship; required for shipping, absent for pickup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// Redacted: delivery details never reach the logs, even through a debug print.
impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delivery(..)")
    }
}

/// A postal address.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// Street and number, 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    /// Flat, floor or building, up to 200 characters.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schema(max_length = 200)]
    pub line2: String,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    /// 2 to 12 letters, digits, spaces or dashes.
    #[schema(min_length = 2, max_length = 12, pattern = "^[A-Za-z0-9 -]{2,12}$")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, such as US, DE or KR.
    #[schema(min_length = 2, max_length = 2, pattern = "^[A-Za-z]{2}$")]
    pub country: String,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Address(..)")
    }
}

/// What is wrong with each field, keyed by its path in the request (`delivery.address.city`).
pub type FieldErrors = BTreeMap<String, String>;

fn text(
    errors: &mut FieldErrors,
    field: &str,
    value: &str,
    required: bool,
    max: usize,
    what: &str,
) {
    let length = value.trim().chars().count();
    if value.chars().any(char::is_control) {
        errors.insert(
            field.into(),
            format!("{what} must be on one line, without control characters"),
        );
    } else if required && length == 0 {
        errors.insert(field.into(), format!("give {what}"));
    } else if length > max {
        errors.insert(
            field.into(),
            format!("{what} is {length} characters long; at most {max} fit"),
        );
    }
}

/// A phone number: 7 to 15 digits (E.164 allows 15), a leading `+` allowed, and the usual
/// separators between digits.
fn phone_ok(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let body = phone.trim().strip_prefix('+').unwrap_or(phone.trim());
    (7..=15).contains(&digits)
        && phone.len() <= 30
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
}

/// Checks the details a deal's fulfilment asks for, field by field. `Ok(None)` when the deal
/// takes none; every problem is reported at once, so a form can mark each field.
pub fn check(
    fulfilment: Fulfilment,
    given: Option<&Delivery>,
) -> Result<Option<Delivery>, FieldErrors> {
    let mut errors = FieldErrors::new();
    let needs_address = match fulfilment {
        Fulfilment::Shipping => true,
        Fulfilment::Pickup => false,
        Fulfilment::Digital | Fulfilment::Coupon => {
            if given.is_some() {
                errors.insert(
                    "delivery".into(),
                    format!(
                        "this deal is {} and takes no delivery details; leave delivery out",
                        fulfilment.as_str()
                    ),
                );
                return Err(errors);
            }
            return Ok(None);
        }
    };
    let Some(given) = given else {
        errors.insert(
            "delivery".into(),
            if needs_address {
                "this deal ships: give delivery.name, delivery.phone and delivery.address".into()
            } else {
                "this deal is collected in person: give delivery.name and delivery.phone".into()
            },
        );
        return Err(errors);
    };
    text(
        &mut errors,
        "delivery.name",
        &given.name,
        true,
        100,
        "the recipient's name",
    );
    if given.phone.trim().is_empty() {
        errors.insert("delivery.phone".into(), "give a phone number".into());
    } else if !phone_ok(&given.phone) {
        errors.insert(
            "delivery.phone".into(),
            "a phone number has 7 to 15 digits, such as +1 415 555 0100".into(),
        );
    }
    match (&given.address, needs_address) {
        (None, true) => {
            errors.insert(
                "delivery.address".into(),
                "this deal ships: give the address (line1, city, postalCode, country)".into(),
            );
        }
        (Some(_), false) => {
            errors.insert(
                "delivery.address".into(),
                "this deal is collected in person; leave the address out".into(),
            );
        }
        (None, false) => {}
        (Some(address), true) => {
            text(
                &mut errors,
                "delivery.address.line1",
                &address.line1,
                true,
                200,
                "the street and number",
            );
            text(
                &mut errors,
                "delivery.address.line2",
                &address.line2,
                false,
                200,
                "the second address line",
            );
            text(
                &mut errors,
                "delivery.address.city",
                &address.city,
                true,
                100,
                "the city",
            );
            let postal = address.postal_code.trim();
            if !(2..=12).contains(&postal.len())
                || !postal
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
            {
                errors.insert(
                    "delivery.address.postalCode".into(),
                    "a postal code has 2 to 12 letters, digits, spaces or dashes".into(),
                );
            }
            let country = address.country.trim();
            if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
                errors.insert(
                    "delivery.address.country".into(),
                    "the country is a two-letter ISO 3166 code, such as US, DE or KR".into(),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Stored as checked: trimmed, the country in capitals.
    Ok(Some(Delivery {
        name: given.name.trim().to_owned(),
        phone: given.phone.trim().to_owned(),
        address: given
            .address
            .as_ref()
            .filter(|_| needs_address)
            .map(|a| Address {
                line1: a.line1.trim().to_owned(),
                line2: a.line2.trim().to_owned(),
                city: a.city.trim().to_owned(),
                postal_code: a.postal_code.trim().to_uppercase(),
                country: a.country.trim().to_uppercase(),
            }),
    }))
}

/// The details of a shopper's latest order that had any, offered again on their next order.
pub async fn last_of(pool: &PgPool, shopper: &str) -> Result<Option<Delivery>, Error> {
    let row: Option<DeliveryRow> = bounded(
        "cannot read delivery details",
        sqlx::query_as(
            "SELECT d.name, d.phone, d.line1, d.line2, d.city, d.postal_code, d.country \
             FROM deliveries d JOIN orders o ON o.id = d.order_id \
             WHERE o.shopper = $1 ORDER BY o.id DESC LIMIT 1",
        )
        .bind(shopper)
        .fetch_optional(pool),
    )
    .await?;
    Ok(row.map(DeliveryRow::into_delivery))
}

/// When the deal's personal data was deleted (retention over), if it was.
pub async fn deleted_at(pool: &PgPool) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
    bounded(
        "cannot read when personal data was deleted",
        sqlx::query_scalar("SELECT deleted_at FROM personal_data_deleted").fetch_optional(pool),
    )
    .await
}

/// A `deliveries` row as read.
#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    pub name: String,
    pub phone: String,
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

impl DeliveryRow {
    pub fn into_delivery(self) -> Delivery {
        let address = self.line1.map(|line1| Address {
            line1,
            line2: self.line2.unwrap_or_default(),
            city: self.city.unwrap_or_default(),
            postal_code: self.postal_code.unwrap_or_default(),
            country: self.country.unwrap_or_default(),
        });
        Delivery {
            name: self.name,
            phone: self.phone,
            address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipping() -> Delivery {
        Delivery {
            name: "Ada Lovelace".into(),
            phone: "+44 20 7946 0958".into(),
            address: Some(Address {
                line1: "12 St James's Square".into(),
                line2: String::new(),
                city: "London".into(),
                postal_code: "sw1y 4jh".into(),
                country: "gb".into(),
            }),
        }
    }

    #[test]
    fn complete_shipping_details_are_kept_tidied() {
        let kept = check(Fulfilment::Shipping, Some(&shipping()))
            .unwrap()
            .unwrap();
        let address = kept.address.unwrap();
        assert_eq!(address.postal_code, "SW1Y 4JH");
        assert_eq!(address.country, "GB");
    }

    #[test]
    fn every_wrong_field_is_named_at_once() {
        let mut bad = shipping();
        bad.name = "  ".into();
        bad.phone = "12".into();
        let address = bad.address.as_mut().unwrap();
        address.city = String::new();
        address.country = "Britain".into();
        address.postal_code = "<script>".into();
        let errors = check(Fulfilment::Shipping, Some(&bad)).unwrap_err();
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "delivery.address.city",
                "delivery.address.country",
                "delivery.address.postalCode",
                "delivery.name",
                "delivery.phone"
            ]
        );
    }

    #[test]
    fn each_fulfilment_asks_for_its_own_details() {
        assert!(check(Fulfilment::Shipping, None)
            .unwrap_err()
            .contains_key("delivery"));
        let mut no_address = shipping();
        no_address.address = None;
        assert!(check(Fulfilment::Shipping, Some(&no_address))
            .unwrap_err()
            .contains_key("delivery.address"));
        assert!(check(Fulfilment::Pickup, Some(&no_address))
            .unwrap()
            .is_some());
        assert!(check(Fulfilment::Pickup, Some(&shipping()))
            .unwrap_err()
            .contains_key("delivery.address"));
        assert_eq!(check(Fulfilment::Digital, None), Ok(None));
        assert_eq!(check(Fulfilment::Coupon, None), Ok(None));
        assert!(check(Fulfilment::Coupon, Some(&shipping())).is_err());
    }

    #[test]
    fn phones_have_seven_to_fifteen_digits() {
        for good in ["+1 (415) 555-0100", "010-1234-5678", "0049.30.1234567"] {
            assert!(phone_ok(good), "{good}");
        }
        for bad in [
            "123456",
            "+1 415 555 0100 1234 5",
            "call me",
            "+1 415 555 0100 ext 2",
        ] {
            assert!(!phone_ok(bad), "{bad}");
        }
    }

    #[test]
    fn names_stay_on_one_line_and_within_bounds() {
        let mut bad = shipping();
        bad.name = "Ada\nLovelace".into();
        assert!(check(Fulfilment::Shipping, Some(&bad))
            .unwrap_err()
            .contains_key("delivery.name"));
        bad.name = "A".repeat(101);
        assert!(check(Fulfilment::Shipping, Some(&bad))
            .unwrap_err()
            .contains_key("delivery.name"));
    }

    #[test]
    fn debug_output_hides_the_details() {
        let printed = format!("{:?}", shipping());
        assert!(!printed.contains("Ada"), "{printed}");
    }
}
