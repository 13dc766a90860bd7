"""``buildit worker``: the build worker of BuildIt.

Public entry points:

- ``run_worker(config, *, transport=None, task_status=...)``: the worker itself, to run
  under ``nursery.start`` (it returns a ``WorkerHandle``);
- ``WorkerConfig`` and ``load_worker_config(flags, environ)``: its settings;
- ``buildit.worker.cli.register(subparsers)``: the ``buildit worker`` subcommand.

See ``buildit/worker/README.md`` for what the worker does and the protocol extensions
it uses.
"""

from __future__ import annotations

from buildit.worker.config import WorkerConfig, load_worker_config
from buildit.worker.errors import (
    ServerRejected,
    ServerUnavailable,
    ServerUnreachable,
    WorkerConfigError,
    WorkerError,
    WorkerUnauthorized,
    WorkspaceError,
)
from buildit.worker.main import WorkerHandle, WorkerStatistics, check_workspace, run_worker

__all__ = [
    "ServerRejected",
    "ServerUnavailable",
    "ServerUnreachable",
    "WorkerConfig",
    "WorkerConfigError",
    "WorkerError",
    "WorkerHandle",
    "WorkerStatistics",
    "WorkerUnauthorized",
    "WorkspaceError",
    "check_workspace",
    "load_worker_config",
    "run_worker",
]
