-- Orders of one deal. Each deal has its own schema, so no column names the deal.
--
-- The order id comes from Redis when stock is reserved. A row is written once, either as a
-- confirmed order (by the order path) or as a lapsed reservation (by the sweeper, when a
-- reservation outlives its TTL). Whichever lands first wins on the primary key, which is what
-- keeps a slow commit and an expiring reservation from both taking effect.
CREATE TABLE orders (
    id              BIGINT PRIMARY KEY,
    shopper         TEXT NOT NULL,
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    unit_price      BIGINT NOT NULL CHECK (unit_price >= 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('confirmed', 'cancelled', 'lapsed')),
    idempotency_key TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at    TIMESTAMPTZ,
    -- Set once the stock of a cancelled order is back in Redis.
    restocked       BOOLEAN NOT NULL DEFAULT false
);

-- One order per shopper and idempotency key, whatever Redis remembers.
CREATE UNIQUE INDEX orders_idempotency ON orders (shopper, idempotency_key);
CREATE INDEX orders_by_shopper ON orders (shopper, id);
CREATE INDEX orders_to_restock ON orders (id) WHERE status = 'cancelled' AND NOT restocked;

CREATE TABLE payments (
    order_id   BIGINT PRIMARY KEY REFERENCES orders (id),
    provider   TEXT NOT NULL,
    reference  TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE refunds (
    order_id   BIGINT PRIMARY KEY REFERENCES orders (id),
    reference  TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
