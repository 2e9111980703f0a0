-- The seed that draws the pre-queue, fixed once, before anyone can join, and kept here so that
-- its published commitment survives Redis losing its data. Revealed after the start.
CREATE TABLE draw_seed (
    only_row   BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    seed       BYTEA NOT NULL CHECK (length(seed) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
