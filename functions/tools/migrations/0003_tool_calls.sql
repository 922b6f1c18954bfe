-- Per-call results of ai.victor.tools.requested, so a redelivered request never re-runs a write.
CREATE TABLE IF NOT EXISTS tool_call_results (
    conversation_id text        NOT NULL,
    turn            integer     NOT NULL,
    call_id         text        NOT NULL,
    name            text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('running', 'done')),
    result          bytea,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (conversation_id, turn, call_id)
);
CREATE INDEX IF NOT EXISTS tool_call_results_finished_at ON tool_call_results (finished_at);
