-- Evaluation runs: the queue (one row per run), the test set's cases as they were validated, one result per
-- case and route (written as each answer ends, so an interrupted run resumes where it stopped), and events.

CREATE TABLE evals (
    id                 text PRIMARY KEY,     -- evalrun-<hex>
    name               text,
    model              text NOT NULL,        -- the base model the plain and rag routes ask
    adapter            text,                 -- the finetuned and hybrid routes' adapter
    routes             text[] NOT NULL,
    options            jsonb NOT NULL,       -- concurrency, max_tokens, rerank, queries_per_day, declared answers
    data_source        jsonb NOT NULL,       -- where the cases came from (not the cases: eval_items)
    cases              int NOT NULL,
    metadata           jsonb,
    status             text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'canceled')),
    cancel_requested   boolean NOT NULL DEFAULT false,
    attempt            int NOT NULL DEFAULT 0,  -- Ray submissions so far; each has its own submission id
    ray_submission_id  text,                 -- the current attempt's; NULL for a run started by hand
    report             json,                 -- the summary (json, not jsonb: its routes keep their order)
    error              jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz
);
CREATE INDEX evals_queue_idx ON evals (created_at, id) WHERE status = 'queued';
CREATE INDEX evals_created_idx ON evals (created_at DESC, id DESC);

CREATE TABLE eval_items (
    eval_id     text NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    position    int NOT NULL,                -- 1-based, in the test set's order
    item        jsonb NOT NULL,              -- the validated case
    PRIMARY KEY (eval_id, position)
);

CREATE TABLE eval_results (
    id          bigserial PRIMARY KEY,
    eval_id     text NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    position    int NOT NULL,
    route       text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'unscored')),
    result      jsonb NOT NULL,              -- cluster.evaluation.runner.CaseResult
    attempt     int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (eval_id, position, route),       -- a resumed run never records a case twice
    FOREIGN KEY (eval_id, position) REFERENCES eval_items (eval_id, position) ON DELETE CASCADE
);
CREATE INDEX eval_results_eval_idx ON eval_results (eval_id, id);

CREATE TABLE eval_events (
    id          bigserial PRIMARY KEY,
    eval_id     text NOT NULL REFERENCES evals (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    level       text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    message     text NOT NULL,
    data        jsonb,
    dedupe_key  text,
    UNIQUE (eval_id, dedupe_key)
);
CREATE INDEX eval_events_eval_idx ON eval_events (eval_id, id);
