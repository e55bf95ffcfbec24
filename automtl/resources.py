"""Locate the YAML files shipped with automtl (search spaces, study presets, example configs).

In a source checkout they are the repository's `search_spaces/` and `studies/` folders; in an
installed wheel they are the packages `automtl.search_spaces` and `automtl.studies`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def resource_dir(kind: str) -> Path:
    """Folder of shipped files: kind is "search_spaces", "studies" or "studies/examples"."""
    local = _REPO_ROOT / kind
    if local.is_dir():
        return local
    package = "automtl." + kind.replace("/", ".")
    return Path(str(resources.files(package)))


def find_named_yaml(kind: str, name_or_path: str) -> Path | None:
    """A file path if `name_or_path` is an existing file, else `<kind>/<name>.yaml`, else None."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    candidate = resource_dir(kind) / f"{name_or_path}.yaml"
    return candidate if candidate.is_file() else None


def list_named_yaml(kind: str) -> list[str]:
    """Names (without .yaml) of the shipped files of `kind`."""
    return sorted(p.stem for p in resource_dir(kind).glob("*.yaml"))
