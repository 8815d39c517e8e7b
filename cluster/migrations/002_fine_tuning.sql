-- The fine-tuning queue: uploaded training files, jobs (the queue itself) and their events.

CREATE TABLE training_files (
    id          text PRIMARY KEY,            -- file-<hex>
    filename    text NOT NULL,
    purpose     text NOT NULL,
    bytes       bigint NOT NULL,
    sha256      text NOT NULL,
    examples    int NOT NULL,
    uri         text NOT NULL,               -- where the content lives (the file store)
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE fine_tuning_jobs (
    id                 text PRIMARY KEY,     -- ftjob-<hex>
    model              text NOT NULL,        -- the base model
    training_file      text NOT NULL REFERENCES training_files (id),
    validation_file    text REFERENCES training_files (id),
    suffix             text,
    hyperparameters    jsonb NOT NULL,
    seed               int NOT NULL,
    priority           int NOT NULL DEFAULT 0,
    metadata           jsonb,                -- the client's key/value tags
    status             text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    cancel_requested   boolean NOT NULL DEFAULT false,
    num_gpus           real NOT NULL DEFAULT 0,
    adapter_name       text NOT NULL UNIQUE, -- decided at creation, so a re-submission publishes the same name
    ray_submission_id  text NOT NULL UNIQUE, -- decided at creation: Ray refuses a second job with the same id
    submitted_at       timestamptz,          -- set only after Ray accepted the submission
    log_offset         int NOT NULL DEFAULT 0,
    fine_tuned_model   text,
    adapter_version    text,
    trained_tokens     bigint,
    metrics            jsonb,
    error              jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz
);
CREATE INDEX fine_tuning_jobs_queue_idx ON fine_tuning_jobs (priority DESC, created_at, id) WHERE status = 'queued';
CREATE INDEX fine_tuning_jobs_created_idx ON fine_tuning_jobs (created_at DESC, id DESC);

CREATE TABLE fine_tuning_events (
    id          bigserial PRIMARY KEY,
    job_id      text NOT NULL REFERENCES fine_tuning_jobs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    level       text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    type        text NOT NULL CHECK (type IN ('message', 'metrics')),
    message     text NOT NULL,
    data        jsonb,
    dedupe_key  text,                        -- one event per key: replayed log lines do not repeat events
    UNIQUE (job_id, dedupe_key)
);
CREATE INDEX fine_tuning_events_job_idx ON fine_tuning_events (job_id, id);
