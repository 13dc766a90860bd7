-- GitHub: the check run that currently shows each job on its commit. A job's first
-- notification creates it; a job that goes back to the queue after its run started
-- (GitHub never reopens a run) gets a new one, whose id replaces the old.
CREATE TABLE github_check_runs (
    job_id       bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    check_run_id bigint NOT NULL,
    head_sha     text NOT NULL CHECK (head_sha ~ '^[0-9a-f]{40}$'),
    status       text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed')),
    updated_at   timestamptz NOT NULL
);
