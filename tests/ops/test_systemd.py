"""contrib/systemd: units systemd accepts, and example env files naming every setting."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildit.config import SERVER_SETTINGS
from buildit.worker.config import SETTINGS as WORKER_SETTINGS

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
UNITS = ("buildit.service", "buildit-worker.service")
_LINE = re.compile(r"^(#.*|\s*|[A-Z][A-Z0-9_]*=.*)$")


def _buildit_executable() -> str:
    found = Path(sys.executable).parent / "buildit"
    return str(found) if found.exists() else shutil.which("buildit") or "/bin/true"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify checks that ExecStart exists: point it at this installation's buildit.
    for unit in UNITS:
        text = (CONTRIB / unit).read_text()
        assert "ExecStart=/usr/local/bin/buildit " in text
        (tmp_path / unit).write_text(
            text.replace("/usr/local/bin/buildit", _buildit_executable()))
    result = subprocess.run([analyze, "verify", *(str(tmp_path / u) for u in UNITS)],
                            capture_output=True, text=True, check=False)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "buildit" in line]
    if result.returncode != 0 and not ours and "System has not been booted" in result.stderr:
        pytest.skip(f"systemd-analyze cannot verify here: {result.stderr.strip()}")
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_units_are_what_the_docs_say() -> None:
    server = (CONTRIB / "buildit.service").read_text()
    worker = (CONTRIB / "buildit-worker.service").read_text()
    assert "EnvironmentFile=/etc/buildit/buildit.env" in server
    assert "User=buildit" in server and "ProtectSystem=strict" in server
    assert "EnvironmentFile=/etc/buildit/worker.env" in worker
    assert "User=root" in worker and "KillMode=mixed" in worker
    # the stop timeout outlasts the worker's default shutdown grace (600 s)
    timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M).group(1))  # type: ignore[union-attr]
    assert timeout > 600
    for breaks_ciel in ("NoNewPrivileges=yes", "ProtectSystem=", "PrivateDevices=",
                        "SystemCallFilter=", "RestrictSUIDSGID="):
        assert not re.search(rf"^{breaks_ciel}", worker, re.M), breaks_ciel


@pytest.mark.parametrize(("env_file", "settings"), [
    ("buildit.env", [s.env for s in SERVER_SETTINGS] + ["BUILDIT_LOG_FORMAT"]),
    ("buildit-worker.env", [s.env for s in WORKER_SETTINGS] + ["BUILDIT_LOG_FORMAT"]),
])
def test_env_files_document_every_setting(env_file: str, settings: list[str]) -> None:
    text = (CONTRIB / env_file).read_text()
    for line in text.splitlines():
        assert _LINE.match(line), f"not an EnvironmentFile line: {line!r}"
    named = set(re.findall(r"^#?(BUILDIT_[A-Z0-9_]+)=", text, re.M))
    missing = [name for name in settings if name not in named]
    assert not missing, f"{env_file} does not document {missing}"
