-- Exact totals for the list pages without a count(*) over the whole history.
--
-- Statement-level triggers keep the number of jobs per (arch, status) and of
-- pipelines per (status, stable branch, has a PR) in the very transaction that
-- changes the rows, so a total read from here is what count(*) would answer. Each
-- backend adds its deltas to its own slot (its pid modulo 16), so concurrent
-- transactions seldom wait on one counter row; a total sums the slots (a few hundred
-- rows at most, whatever the length of the history).

CREATE TABLE job_counts (
    arch   text NOT NULL,
    status text NOT NULL,
    slot   smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (arch, status, slot)
);

CREATE TABLE pipeline_counts (
    status text NOT NULL,
    stable boolean NOT NULL,  -- git_branch = 'stable'
    pr     boolean NOT NULL,  -- github_pr IS NOT NULL
    slot   smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (status, stable, pr, slot)
);

CREATE FUNCTION count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts AS c (arch, status, slot, n)
        SELECT arch, status, pg_backend_pid() % 16, count(*) FROM new_rows
        GROUP BY arch, status ORDER BY arch, status
        ON CONFLICT (arch, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO job_counts AS c (arch, status, slot, n)
        SELECT arch, status, pg_backend_pid() % 16, sum(d) FROM (
            SELECT arch, status, 1 AS d FROM new_rows
            UNION ALL SELECT arch, status, -1 FROM old_rows) AS t
        GROUP BY arch, status HAVING sum(d) <> 0 ORDER BY arch, status
        ON CONFLICT (arch, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_counts AS c (arch, status, slot, n)
        SELECT arch, status, pg_backend_pid() % 16, -count(*) FROM old_rows
        GROUP BY arch, status ORDER BY arch, status
        ON CONFLICT (arch, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE  -- TRUNCATE
        DELETE FROM job_counts;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION count_pipelines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pipeline_counts AS c (status, stable, pr, slot, n)
        SELECT status, git_branch = 'stable', github_pr IS NOT NULL, pg_backend_pid() % 16,
               count(*)
        FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (status, stable, pr, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO pipeline_counts AS c (status, stable, pr, slot, n)
        SELECT status, stable, pr, pg_backend_pid() % 16, sum(d) FROM (
            SELECT status, git_branch = 'stable' AS stable, github_pr IS NOT NULL AS pr, 1 AS d
            FROM new_rows
            UNION ALL SELECT status, git_branch = 'stable', github_pr IS NOT NULL, -1
            FROM old_rows) AS t
        GROUP BY status, stable, pr HAVING sum(d) <> 0 ORDER BY status, stable, pr
        ON CONFLICT (status, stable, pr, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO pipeline_counts AS c (status, stable, pr, slot, n)
        SELECT status, git_branch = 'stable', github_pr IS NOT NULL, pg_backend_pid() % 16,
               -count(*)
        FROM old_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (status, stable, pr, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE  -- TRUNCATE
        DELETE FROM pipeline_counts;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_jobs();
CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_jobs();
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_jobs();
CREATE TRIGGER jobs_count_truncate AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION count_jobs();

CREATE TRIGGER pipelines_count_insert AFTER INSERT ON pipelines
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION count_pipelines();
CREATE TRIGGER pipelines_count_update AFTER UPDATE ON pipelines
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_pipelines();
CREATE TRIGGER pipelines_count_delete AFTER DELETE ON pipelines
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION count_pipelines();
CREATE TRIGGER pipelines_count_truncate AFTER TRUNCATE ON pipelines
    FOR EACH STATEMENT EXECUTE FUNCTION count_pipelines();

-- The rows already there (writers wait on the triggers' table locks until we commit).
INSERT INTO job_counts (arch, status, slot, n)
SELECT arch, status, 0, count(*) FROM jobs GROUP BY arch, status;
INSERT INTO pipeline_counts (status, stable, pr, slot, n)
SELECT status, git_branch = 'stable', github_pr IS NOT NULL, 0, count(*)
FROM pipelines GROUP BY 1, 2, 3;
