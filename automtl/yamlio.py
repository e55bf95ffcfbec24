"""Strict YAML reading and writing for every automtl file (configs, spaces, study presets).

Duplicate keys, empty documents, unreadable files and syntax errors are one-line `ConfigError`s
naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from automtl._typed import to_dict
from automtl.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML says keys are
    unique; PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: its keys are merged below, explicit keys win
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error follows
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first at line {first.line + 1}); "
                    "keep one", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# Plain data only: a date (2024-01-01) stays text, and the tags that build Python objects other
# than numbers, text, lists and mappings are refused (a space document is stored as JSON, which
# cannot hold them: !!binary, !!set, ... crashed there).
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _refuse_tag(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag !!{node.tag.rsplit(':', 1)[-1]} is not supported; write a plain "
        "number, text, list or mapping", node.start_mark)


for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


def parse_yaml(text: str, where: str) -> Any:
    """A YAML document from text (strict: duplicate keys refused); errors name `where`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: invalid YAML{at}: {problem}; fix the syntax") from None


def load_yaml(path: str | Path) -> Any:
    """Read a YAML document, turning I/O and syntax problems into one-line `ConfigError`s.

    An empty document (empty file, only comments) is refused: it would silently mean
    "all defaults", which is never what a file given on purpose means.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a file; give the path of a YAML file in it")
    if not p.is_file():
        raise ConfigError(f"{p}: file not found; check the path")
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: a UTF-8 BOM is accepted
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read file ({exc.__class__.__name__}); check "
                          "permissions/encoding") from None
    doc = parse_yaml(text, str(p))
    if doc is None:
        raise ConfigError(f"{p}: the file is empty; write the settings into it (see "
                          "studies/examples/ for complete files)")
    return doc


def dump_yaml(obj: Any) -> str:
    """YAML text of a config dataclass (or plain data), keys in declaration order."""
    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=None)


__all__ = ["dump_yaml", "load_yaml", "parse_yaml"]
