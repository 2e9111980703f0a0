-- The beacon that keys the draw together with the seed, named before anyone could join (it is
-- bound into the commitment), and its round once drawn: the first round emitted after the
-- pre-queue closed. Every replica draws with the round recorded here, whatever it fetched. A
-- deal committed before beacons has '' (none), and its commitment stays SHA-256(seed).
ALTER TABLE draw_seed
    ADD COLUMN beacon TEXT NOT NULL DEFAULT '',
    ADD COLUMN beacon_round BIGINT CHECK (beacon_round > 0),
    ADD COLUMN beacon_randomness TEXT,
    -- True once the beacon was given up on: the draw is keyed by the seed alone.
    ADD COLUMN beacon_unavailable BOOLEAN NOT NULL DEFAULT false,
    -- When the pre-queue closed (the deal's start as it stood then, Unix ms), recorded with its
    -- size: the beacon's round is the first emitted after it, whatever the schedule says later.
    ADD COLUMN closed_at_ms BIGINT;
