-- Double opt-in: an address is mailed reminders only after its owner followed the link of a
-- confirmation mail, so nobody can enrol someone else's address. An address left unconfirmed is
-- deleted a day after it was left. Addresses kept before this get a confirmation mail too.
ALTER TABLE reminders ADD COLUMN confirmed_at TIMESTAMPTZ;
-- Set in the same transaction that holds the row's lock while the confirmation mail is handed
-- to the SMTP server, as the reminders' own columns are.
ALTER TABLE reminders ADD COLUMN confirmation_sent_at TIMESTAMPTZ;
