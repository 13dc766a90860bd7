"""The packages tree (aosc-os-abbs): resolve branches, plan pipelines.

    tree = AbbsTree(path, remote="origin")
    sha = await tree.resolve("stable")
    plan = await tree.plan(sha, ["bash", "groups/base"], None, known_archs=archs)

Decisions (parsing ``defines``/``spec``, FAIL_ARCH, ENVREQ) are pure functions in
:mod:`buildit.abbs.rules` and :mod:`buildit.abbs.bashvars`; git is in
:mod:`buildit.abbs.git` and :mod:`buildit.abbs.tree`.
"""

from __future__ import annotations

from buildit.abbs.rules import TreePlan
from buildit.abbs.tree import AbbsError, AbbsTree

__all__ = ["AbbsError", "AbbsTree", "TreePlan"]
