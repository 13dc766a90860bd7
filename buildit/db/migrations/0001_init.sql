-- BuildIt schema, version 1.

CREATE TABLE users (
    id               bigserial PRIMARY KEY,
    github_login     text NOT NULL UNIQUE CHECK (github_login ~ '^[A-Za-z0-9-]{1,39}$'),
    github_id        bigint UNIQUE,
    github_avatar_url text,
    role             text NOT NULL DEFAULT 'guest' CHECK (role IN ('guest', 'developer')),
    telegram_chat_id bigint UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    role_checked_at  timestamptz
);

-- API tokens: only a SHA-256 of the token is stored.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE workers (
    id                    bigserial PRIMARY KEY,
    hostname              text NOT NULL CHECK (length(hostname) BETWEEN 1 AND 253),
    arch                  text NOT NULL CHECK (length(arch) BETWEEN 1 AND 64),
    git_commit            text NOT NULL DEFAULT '',
    worker_version        text,
    memory_bytes          bigint NOT NULL DEFAULT 0 CHECK (memory_bytes >= 0),
    logical_cores         integer NOT NULL DEFAULT 0 CHECK (logical_cores >= 0),
    disk_free_space_bytes bigint NOT NULL DEFAULT 0 CHECK (disk_free_space_bytes >= 0),
    performance           bigint,
    internet_connectivity boolean,
    created_at            timestamptz NOT NULL,
    last_heartbeat_at     timestamptz NOT NULL,
    UNIQUE (hostname, arch)
);

CREATE TABLE pipelines (
    id               bigserial PRIMARY KEY,
    git_branch       text NOT NULL CHECK (length(git_branch) BETWEEN 1 AND 200),
    git_sha          text NOT NULL CHECK (git_sha ~ '^[0-9a-f]{40}$'),
    packages         text NOT NULL CHECK (packages <> ''),
    archs            text NOT NULL CHECK (archs <> ''),
    options          text,
    source           text NOT NULL CHECK (source IN ('api', 'web', 'cli', 'github', 'telegram')),
    creator_user_id  bigint REFERENCES users (id) ON DELETE SET NULL,
    github_pr        bigint CHECK (github_pr > 0),
    telegram_chat_id bigint,
    status           text NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'error', 'failed', 'success')),
    warnings         text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX pipelines_stable ON pipelines (id DESC) WHERE git_branch = 'stable';
CREATE INDEX pipelines_pr ON pipelines (id DESC) WHERE github_pr IS NOT NULL;
CREATE INDEX pipelines_creator ON pipelines (creator_user_id, id DESC);
CREATE INDEX pipelines_status ON pipelines (status, id DESC);

-- One row per (pipeline, arch); a restart makes a new attempt of the same job.
CREATE TABLE jobs (
    id                        bigserial PRIMARY KEY,
    pipeline_id               bigint NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
    arch                      text NOT NULL,
    packages                  text NOT NULL CHECK (packages <> ''),
    status                    text NOT NULL DEFAULT 'created'
                              CHECK (status IN ('created', 'running', 'error', 'success', 'failed')),
    -- higher first: stable-branch builds go before topic branches
    priority                  smallint NOT NULL DEFAULT 0,
    -- minimum requirements of a worker (NULL: none)
    require_min_core          integer CHECK (require_min_core > 0),
    require_min_total_mem     bigint CHECK (require_min_total_mem > 0),
    require_min_total_mem_per_core double precision CHECK (require_min_total_mem_per_core > 0),
    require_min_disk          bigint CHECK (require_min_disk > 0),
    -- the current attempt; 0 before the first claim
    attempt                   integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    attempt_token             uuid,
    lost_attempts             integer NOT NULL DEFAULT 0 CHECK (lost_attempts >= 0),
    assigned_worker_id        bigint REFERENCES workers (id) ON DELETE SET NULL,
    assigned_at               timestamptz,
    built_by_worker_id        bigint REFERENCES workers (id) ON DELETE SET NULL,
    -- result of the latest finished attempt
    build_success             boolean,
    pushpkg_success           boolean,
    successful_packages       text[],
    failed_package            text,
    skipped_packages          text[],
    package_versions          jsonb,
    log_url                   text,
    elapsed_secs              bigint,
    error_message             text,
    created_at                timestamptz NOT NULL,
    finished_at               timestamptz,
    UNIQUE (pipeline_id, arch),
    CHECK ((status = 'running') = (attempt_token IS NOT NULL)),
    CHECK (status = 'running' OR assigned_worker_id IS NULL),
    CHECK ((status IN ('error', 'success', 'failed')) = (finished_at IS NOT NULL))
);
-- Claiming a runnable job touches only this small index, however long the history.
CREATE INDEX jobs_runnable ON jobs (arch, priority DESC, id) WHERE status = 'created';
CREATE INDEX jobs_running ON jobs (assigned_worker_id) WHERE status = 'running';
CREATE INDEX jobs_pipeline ON jobs (pipeline_id);
CREATE INDEX jobs_built_by ON jobs (built_by_worker_id, id DESC);

-- Every claim of a job is an attempt, fenced by its token.
CREATE TABLE job_attempts (
    job_id      bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt > 0),
    token       uuid NOT NULL UNIQUE,
    worker_id   bigint REFERENCES workers (id) ON DELETE SET NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    outcome     text CHECK (outcome IN ('success', 'failed', 'error', 'lost', 'cancelled',
                                        'handed_back')),
    result      jsonb,
    log_size    bigint NOT NULL DEFAULT 0 CHECK (log_size >= 0),
    PRIMARY KEY (job_id, attempt)
);
CREATE INDEX job_attempts_worker ON job_attempts (worker_id, started_at DESC);

-- Status of each package per arch on the stable branch.
CREATE TABLE packages (
    name        text NOT NULL,
    arch        text NOT NULL,
    version     text,
    last_job_id bigint REFERENCES jobs (id) ON DELETE SET NULL,
    last_result text NOT NULL CHECK (last_result IN ('success', 'failed', 'skipped', 'error')),
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (name, arch)
);

-- Durable notifications: written in the transaction of the change that causes them.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    channel         text NOT NULL CHECK (channel IN ('github', 'telegram')),
    kind            text NOT NULL,
    dedup_key       text UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    delivered_at    timestamptz,
    failed_at       timestamptz,
    last_error      text
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Webhook deliveries seen (de-duplication of GitHub and Telegram retries).
CREATE TABLE webhook_deliveries (
    source      text NOT NULL CHECK (source IN ('github', 'telegram')),
    delivery_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, delivery_id)
);
