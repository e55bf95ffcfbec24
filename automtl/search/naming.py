"""Study names: what a valid one is, and the file name it becomes (never a path elsewhere).

A study name is stored in the database as given (any printable text), but wherever it becomes a
file or folder name (the default HTML report, checkpoint folders) it goes through
`safe_filename`, and the result is checked to lie inside its folder (`confined_path`).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from automtl.errors import AutomtlError

MAX_STUDY_NAME = 256  # Optuna stores names in a 512-character column; leave room for suffixes


def check_study_name(name: str, option: str = "--study-name") -> str:
    """`name` if usable as a study name: not empty, one printable line, not too long."""
    if not name or not name.strip():
        raise AutomtlError(f"{option} must not be empty; give a name such as my-study (or omit "
                           "the option for the preset's name)")
    if not name.isprintable():
        raise AutomtlError(f"{option} {name!r}: control characters (newlines, tabs ...) are not "
                           "allowed in a study name")
    if len(name) > MAX_STUDY_NAME:
        raise AutomtlError(f"{option}: the name has {len(name)} characters; use at most "
                           f"{MAX_STUDY_NAME}")
    return name


def safe_filename(name: str) -> str:
    """`name` as one file-name component: letters, digits, `_`, `-`, `.`; no leading dot. A name
    that had to change gets a short hash of itself, so two studies never share a file or folder
    ("a/b" and "a\\b" were both "a_b": one study's report and checkpoints replaced the other's)."""
    # 200 + hash + suffix stays below the usual 255-byte limit of one file name
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".")[:200] or "_"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return safe


def confined_path(folder: Path, name: str, suffix: str = "") -> Path:
    """`folder / safe_filename(name) + suffix`, guaranteed to lie inside `folder`."""
    base = folder.resolve()
    out = (base / (safe_filename(name) + suffix)).resolve()
    if out.parent != base:  # cannot happen after safe_filename; a guard, not a path
        raise AutomtlError(f"study name {name!r} would write outside {folder}; rename it")
    return out


__all__ = ["MAX_STUDY_NAME", "check_study_name", "confined_path", "safe_filename"]
