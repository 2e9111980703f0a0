-- Faults: Redis can lose its data, replicas die mid-order, cancels race.
--
-- `redis_epoch` counts the times Redis's figures were restored from this schema. An order id
-- carries the epoch it was reserved in (`<epoch><9-digit sequence>`), and an order commits only
-- in its own epoch: the restore takes the row's lock to move to the next epoch, so an order
-- reserved before Redis lost its data can never land after the figures were rebuilt without it.
CREATE TABLE redis_epoch (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch    BIGINT NOT NULL
);
INSERT INTO redis_epoch (epoch) VALUES (0);

-- A cancellation is marked first (`cancelling`), then refunded, then finished (`cancelled`),
-- so two cancels of one order, or a cancel retried after a failure, refund once. The epoch in
-- which it finished decides whether its stock still has to go back to Redis.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('confirmed', 'cancelling', 'cancelled', 'lapsed'));
ALTER TABLE orders ADD COLUMN cancel_epoch BIGINT;
ALTER TABLE orders ADD COLUMN cancel_started_at TIMESTAMPTZ;
CREATE INDEX orders_cancelling ON orders (cancel_started_at) WHERE status = 'cancelling';

-- Payments the provider took for which no order was committed (a replica died after the
-- charge, the commit failed, the provider answered late), found and refunded by reconciliation.
CREATE TABLE unmatched_payments (
    order_id         BIGINT PRIMARY KEY,
    reference        TEXT NOT NULL,
    amount           BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    refund_reference TEXT NOT NULL,
    found_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
