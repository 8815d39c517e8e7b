-- Bounded retries of a fine-tuning job's submission to Ray: failures so far, and when the next may be tried.
ALTER TABLE fine_tuning_jobs
    ADD COLUMN submit_attempts int NOT NULL DEFAULT 0,
    ADD COLUMN retry_at timestamptz;
