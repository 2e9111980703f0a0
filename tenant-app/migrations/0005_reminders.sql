-- Addresses shoppers left to be mailed before the start. They are personal data: used for the
-- two reminder mails only, deleted by their owner through the mail's unsubscribe link, and
-- deleted as a whole when the deal's retention ends.
CREATE TABLE reminders (
    id          BIGSERIAL PRIMARY KEY,
    -- Lowercased, so one address signs up once.
    email       TEXT NOT NULL UNIQUE,
    -- The secret in the unsubscribe link: knowing it is the only way to remove the address.
    token       TEXT NOT NULL UNIQUE,
    -- By the deal's clock: a mail is due only for addresses left before its moment.
    created_at  TIMESTAMPTZ NOT NULL,
    -- Set in the same transaction that holds the row's lock while the mail is handed to the
    -- SMTP server, so each mail goes once across replicas.
    sent_12h_at TIMESTAMPTZ,
    sent_1h_at  TIMESTAMPTZ
);
