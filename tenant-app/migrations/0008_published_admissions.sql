-- The admission log, once published, is part of the fairness record for good. Redis only
-- stages it: a Redis that came back behind forgets its last entries, and one replaced empty
-- forgets all of them. Every replica moves staged entries here a few times a second, and
-- `/api/fairness` and `/api/fairness/log` serve only what is here, so what anyone has read
-- never changes. Places only grow down the log (`first_place` of an entry is above every
-- `last_place` before it), and a restore moves the line's head past the last place here.
CREATE TABLE admission_log (
    entry       BIGINT PRIMARY KEY CHECK (entry > 0),
    first_place BIGINT NOT NULL UNIQUE,
    last_place  BIGINT NOT NULL CHECK (last_place >= first_place),
    line        TEXT NOT NULL
);

-- The pre-queue's size, fixed at the start: the draw's places follow from it, so it must
-- survive Redis too.
ALTER TABLE draw_seed ADD COLUMN pre_queue BIGINT CHECK (pre_queue >= 0);
