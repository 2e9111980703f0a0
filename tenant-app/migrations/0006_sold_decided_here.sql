-- PostgreSQL decides what is sold. Redis reserves stock on the fast path, but a Redis that came
-- back behind (a node lost with `appendfsync everysec`), restored twice or edited by hand can
-- believe more is left than there is. Every group-commit batch therefore moves these figures
-- in the same transaction that writes its orders, under the `stock_ledger` row's lock, and an
-- order that would take them past the stock or the shopper past their limit is refused there.
--
-- `sold` counts confirmed units and those whose cancellation is not finished, as the restore
-- of Redis's figures does; `holdings` the same per shopper.
CREATE TABLE stock_ledger (
    only_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    sold     BIGINT NOT NULL CHECK (sold >= 0)
);
INSERT INTO stock_ledger (sold)
    SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE status IN ('confirmed', 'cancelling');

CREATE TABLE holdings (
    shopper TEXT PRIMARY KEY,
    units   BIGINT NOT NULL CHECK (units >= 0)
);
INSERT INTO holdings (shopper, units)
    SELECT shopper, SUM(quantity) FROM orders
    WHERE status IN ('confirmed', 'cancelling') GROUP BY shopper;

-- Blocks of order ids handed out, per epoch: a Redis that came back behind would hand the same
-- block out again, and two replicas would issue the same order ids. The second taker finds its
-- block here, and the figures are restored into a new epoch instead.
CREATE TABLE id_blocks (
    epoch    BIGINT NOT NULL,
    block    BIGINT NOT NULL,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (epoch, block)
);
