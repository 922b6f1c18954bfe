-- Chat conversations as a step state machine: any replica can take the next step,
-- and a redelivered event finds its step already taken instead of repeating it.
CREATE TABLE IF NOT EXISTS chat_conversations (
    id             text        PRIMARY KEY,
    -- Number of the LLM call the conversation is at (counts across requests, so an
    -- event's (conversation_id, turn) names one step for good).
    turn           integer     NOT NULL DEFAULT 0,
    -- idle: no request running; llm: the LLM call of `turn` is due; tools: waiting for its tool results.
    phase          text        NOT NULL DEFAULT 'idle' CHECK (phase IN ('idle', 'llm', 'tools')),
    active_request text,
    -- Set while a replica makes the LLM call of `turn`; expires so a crashed replica's step is retaken.
    claimed_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS chat_requests (
    id              text        PRIMARY KEY,
    conversation_id text        NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    status          text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    provider        text        NOT NULL,
    model           text        NOT NULL,
    max_tokens      integer     NOT NULL,
    system          text,
    stream          boolean     NOT NULL DEFAULT false,
    first_turn      integer     NOT NULL,
    answer          text,
    stop_reason     text,
    code            text,
    error           text,
    provider_status integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS chat_requests_conversation ON chat_requests (conversation_id, first_turn);

-- Messages in Anthropic's content-block shape (text, tool_use, tool_result).
CREATE TABLE IF NOT EXISTS chat_messages (
    conversation_id text        NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    seq             integer     NOT NULL,
    request_id      text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content         jsonb       NOT NULL,
    turn            integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE IF NOT EXISTS chat_tool_calls (
    conversation_id text        NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    id              text        NOT NULL,
    request_id      text        NOT NULL,
    turn            integer     NOT NULL,
    position        integer     NOT NULL,
    name            text        NOT NULL,
    arguments       jsonb       NOT NULL,
    is_error        boolean,
    content         text,
    duration_ms     double precision,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (conversation_id, id)
);

-- One row per LLM call; the primary key is what makes an LLM call happen once per step.
CREATE TABLE IF NOT EXISTS chat_llm_calls (
    conversation_id    text           NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    turn               integer        NOT NULL,
    request_id         text           NOT NULL,
    provider           text           NOT NULL,
    model              text           NOT NULL,
    input_tokens       integer        NOT NULL,
    output_tokens      integer        NOT NULL,
    cache_read_tokens  integer        NOT NULL,
    cache_write_tokens integer        NOT NULL,
    cost_usd           numeric(20, 10) NOT NULL,
    duration_ms        double precision NOT NULL,
    stop_reason        text           NOT NULL,
    from_cache         boolean        NOT NULL DEFAULT false,
    created_at         timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, turn)
);
