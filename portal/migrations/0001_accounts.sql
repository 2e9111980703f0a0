-- Company accounts, their sessions, shared rate-limit counters and used reset links, in the
-- platform PostgreSQL's schema `timedeal_portal`. Created by the portal at start.

-- One account per company; the email is stored lower-cased.
CREATE TABLE accounts (
    email text PRIMARY KEY,
    company text NOT NULL UNIQUE,
    -- argon2id, in the PHC string format (algorithm, parameters, salt and hash together).
    password_hash text NOT NULL,
    -- Failed sign-ins since the last success; at the limit the account locks.
    failed_sign_ins integer NOT NULL DEFAULT 0,
    locked_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- The cookie holds a random token (signed); only its SHA-256 is kept, so a copy of this table
-- opens no session.
CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    email text NOT NULL REFERENCES accounts (email) ON DELETE CASCADE,
    -- The form token of this session (forms carry it; another site cannot read it).
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_by_email ON sessions (email);

-- Fixed-window counters every portal replica shares: sign-ins per client and per account,
-- submissions per client.
CREATE TABLE counters (
    key text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    count integer NOT NULL
);

-- A reset link works once: its token's hash is recorded when used.
CREATE TABLE used_resets (
    token_hash text PRIMARY KEY,
    company text NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now()
);
