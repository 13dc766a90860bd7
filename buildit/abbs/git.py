"""Git plumbing on a packages-tree repository: run git, parse what it prints.

Nothing here checks anything out; every read names a commit explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

# Stable messages (we match on "couldn't find remote ref") and no prompt that would
# wait forever for a password.
_GIT_ENV: Mapping[str, str] = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0",
                               "GIT_OPTIONAL_LOCKS": "0"}


class GitFailed(Exception):
    """git exited with a status the caller did not expect."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"git {' '.join(args)} exited with {returncode}: {stderr}")
        self.returncode = returncode
        self.stderr = stderr


async def run_git(
    repo: Path, *args: str, stdin: bytes = b"", ok: Sequence[int] = (0,)
) -> tuple[int, bytes]:
    """Run ``git -C repo args``; return (status, stdout) for a status in ``ok``."""
    result = await trio.run_process(
        ["git", "-C", str(repo), *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env={**os.environ, **_GIT_ENV},
    )
    if result.returncode not in ok:
        stderr = result.stderr.decode(errors="replace").strip()[-2000:]
        raise GitFailed(args, result.returncode, stderr)
    return result.returncode, result.stdout


def parse_ls_tree(output: bytes) -> list[tuple[str, str]]:
    """``git ls-tree -z`` output -> ``(type, path)`` pairs; paths with a newline dropped."""
    entries: list[tuple[str, str]] = []
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        fields = meta.split()
        path = raw_path.decode(errors="replace")
        if len(fields) == 3 and "\n" not in path:
            entries.append((fields[1].decode(), path))
    return entries


def parse_cat_file_batch(output: bytes, count: int) -> list[bytes | None]:
    """``git cat-file --batch`` output for ``count`` requests -> each blob, or None.

    None stands for a missing object or one that is not a blob (a directory).
    """
    blobs: list[bytes | None] = []
    pos = 0
    for _ in range(count):
        end = output.index(b"\n", pos)
        header = output[pos:end]
        pos = end + 1
        if header.endswith((b" missing", b" ambiguous")):
            blobs.append(None)
            continue
        _oid, kind, size_text = header.rsplit(b" ", 2)
        size = int(size_text)
        content = output[pos : pos + size]
        pos += size + 1
        blobs.append(content if kind == b"blob" else None)
    return blobs


async def read_blobs(repo: Path, sha: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The files at ``paths`` in commit ``sha`` (None where there is no such file)."""
    unique = list(dict.fromkeys(p for p in paths if "\n" not in p))
    if not unique:
        return dict.fromkeys(paths)
    request = "".join(f"{sha}:{path}\n" for path in unique).encode()
    _, output = await run_git(repo, "cat-file", "--batch", stdin=request)
    found = dict(zip(unique, parse_cat_file_batch(output, len(unique)), strict=True))
    return {path: found.get(path) for path in paths}


async def list_tree(repo: Path, treeish: str, dirs: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Entries of the root of ``treeish``, or of each of ``dirs``: ``(type, path)``."""
    _, output = await run_git(
        repo, "ls-tree", "-z", treeish, "--", *(d.rstrip("/") + "/" for d in dirs)
    )
    return parse_ls_tree(output)


async def grep_lines(repo: Path, sha: str, pattern: str, pathspec: str) -> list[tuple[str, str]]:
    """``(path, line)`` for lines of files at ``sha`` matching the extended regex."""
    status, output = await run_git(
        repo, "grep", "-z", "-I", "--no-color", "-E", "-e", pattern, sha, "--", pathspec,
        ok=(0, 1),
    )
    if status == 1:
        return []
    prefix = f"{sha}:"
    matches: list[tuple[str, str]] = []
    for line in output.decode(errors="replace").split("\n"):
        if not line:
            continue
        name, _, text = line.partition("\0")
        matches.append((name.removeprefix(prefix), text))
    return matches
