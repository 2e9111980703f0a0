//! The personal data a deal's storefront keeps, and the one statement that deletes it when the
//! deal's retention ends. Both the storefront (while it still runs) and the operator (which
//! scales the storefront to zero at that very moment) run it; running it twice is harmless.

/// The tables holding personal data, in the deal's schema: delivery details and the addresses
/// left for email reminders. The orders themselves stay: they are the record of what was sold.
pub const TABLES: [&str; 2] = ["deliveries", "reminders"];

/// Deletes every row of [`TABLES`] in the schema first on the search path, and records when in
/// `personal_data_deleted`. A table an older storefront never made is passed over, so the
/// statement works on any deal's schema.
pub const ERASE: &str = "DO $$ BEGIN \
    IF to_regclass('deliveries') IS NOT NULL THEN DELETE FROM deliveries; END IF; \
    IF to_regclass('reminders') IS NOT NULL THEN DELETE FROM reminders; END IF; \
    IF to_regclass('personal_data_deleted') IS NOT NULL THEN \
    INSERT INTO personal_data_deleted DEFAULT VALUES ON CONFLICT DO NOTHING; END IF; \
    END $$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_of_personal_data_is_erased() {
        for table in TABLES {
            assert!(
                ERASE.contains(&format!("DELETE FROM {table};")),
                "{table} is not erased"
            );
        }
    }
}
