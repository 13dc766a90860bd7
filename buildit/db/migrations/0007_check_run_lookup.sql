-- A "Re-run" on GitHub names the check run: find its job without a scan.
CREATE INDEX github_check_runs_check_run ON github_check_runs (check_run_id);
