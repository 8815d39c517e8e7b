-- Answers as they were served (one row per chat/completion response, written when it finished) and users'
-- ratings of them: what `ragtune feedback export` turns into eval test sets and fine-tuning files.
CREATE TABLE responses (
    id             text PRIMARY KEY,            -- chatcmpl-... / cmpl-...: the response's own id
    kind           text NOT NULL CHECK (kind IN ('chat', 'completion')),
    route          text NOT NULL,
    model          text NOT NULL,               -- what the client named
    adapter        text,                        -- the adapter name@version that answered, if one did
    tenant         text NOT NULL,               -- the API key's id, `local` without keys
    messages       jsonb NOT NULL,              -- the conversation as asked (a completion's prompt as one user turn)
    answer         text NOT NULL,
    finish_reason  text,
    citations      jsonb NOT NULL DEFAULT '[]'::jsonb,
    timings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    usage          jsonb NOT NULL DEFAULT '{}'::jsonb,
    cache_status   text,                        -- hit | miss | bypass
    cache_scope    text,                        -- with the question: the cache entry this answer became
    cache_entry    bigint,                      -- a hit: the entry that served it
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX responses_created_idx ON responses (created_at);

CREATE TABLE feedback (
    id           text PRIMARY KEY,              -- fb-<hex>
    response_id  text NOT NULL UNIQUE REFERENCES responses (id) ON DELETE CASCADE,  -- one rating per response
    rating       text NOT NULL CHECK (rating IN ('up', 'down')),
    comment      text,
    correction   text,                          -- what the answer should have been
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_created_idx ON feedback (created_at);
