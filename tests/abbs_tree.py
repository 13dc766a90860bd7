"""Small packages trees (aosc-os-abbs layout) as real git repositories, for tests.

Git runs with its own identity and without the user's or the system's configuration,
so nothing outside the test directory is read or changed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "BuildIt Tests",
    "GIT_AUTHOR_EMAIL": "tests@buildit.invalid",
    "GIT_COMMITTER_NAME": "BuildIt Tests",
    "GIT_COMMITTER_EMAIL": "tests@buildit.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=GIT_ENV
    )
    return result.stdout.strip()


def init_tree(path: Path, files: Mapping[str, str], *, branch: str = "stable") -> str:
    """A new repository at ``path`` with one commit of ``files`` on ``branch``; its sha."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch", branch)
    return commit(path, files, "initial tree")


def commit(repo: Path, files: Mapping[str, str | None], message: str) -> str:
    """Write (or, for None, delete) ``files`` and commit on the current branch; the sha."""
    for name, content in files.items():
        target = repo / name
        if content is None:
            git(repo, "rm", "--quiet", "--", name)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        git(repo, "add", "--", name)
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def switch(repo: Path, branch: str, *, create_from: str | None = None) -> None:
    """Make ``branch`` current in the test repository (created from ``create_from``)."""
    if create_from is None:
        git(repo, "switch", "--quiet", branch)
    else:
        git(repo, "switch", "--quiet", "-c", branch, create_from)


def package(section: str, name: str, defines: str = "", spec: str = "") -> dict[str, str]:
    """Files of an ordinary package: ``<section>/<name>/{spec,autobuild/defines}``."""
    return {
        f"{section}/{name}/spec": spec or "VER=1.0\n",
        f"{section}/{name}/autobuild/defines": f"PKGNAME={name}\nPKGDES=\"{name}\"\n{defines}",
    }


def split_package(
    section: str, name: str, subpackages: Mapping[str, str], spec: str = ""
) -> dict[str, str]:
    """Files of a split package: ``<section>/<name>/<NN-sub>/defines`` per sub-package."""
    files = {f"{section}/{name}/spec": spec or "VER=1.0\n"}
    for index, (sub, defines) in enumerate(subpackages.items(), start=1):
        files[f"{section}/{name}/{index:02d}-{sub}/defines"] = f"PKGNAME={sub}\n{defines}"
    return files
