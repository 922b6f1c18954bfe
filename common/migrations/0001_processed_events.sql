-- Replies to CloudEvents already handled, so a redelivered (source, id) does no work twice.
CREATE TABLE IF NOT EXISTS processed_events (
    function    text        NOT NULL,
    source      text        NOT NULL,
    id          text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('running', 'done')),
    reply       bytea,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (function, source, id)
);
CREATE INDEX IF NOT EXISTS processed_events_finished_at ON processed_events (finished_at);
