"""The dataset registry, data-location rules and the per-process `load_dataset` memo.

Data location for file-backed datasets: ``--data-dir`` (``DataConfig.data_dir``), else
``$AUTOMTL_DATA/<name>`` (``$AUTOMTL_DATA/<name>-sample`` when only the sample is there),
else ``~/.cache/automtl/<name>``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from automtl.config import DataConfig
from automtl.data.schema import Dataset
from automtl.errors import DataError

Loader = Callable[[Path | None, dict[str, Any]], Dataset]


@dataclass(frozen=True)
class DatasetInfo:
    """One registered dataset: how to load it and how to describe it in `automtl data list`."""

    name: str
    description: str
    tasks: tuple[str, ...]
    source: str  # where the data comes from (for messages and `data list`)
    loader: Loader
    options: dict[str, Any] = field(default_factory=dict)  # option name -> default
    needs_files: bool = True  # False: generated in memory (synthetic)
    present: Callable[[Path], bool] | None = None  # are the files in this folder?
    get_data: str = ""  # how to obtain/prepare the files (the end of the missing-data message)
    hint: Callable[[Path], str | None] | None = None  # a folder-specific missing-data message


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add (or replace) a dataset in the registry."""
    DATASETS[info.name] = info
    return info


def get_info(name: str) -> DatasetInfo:
    """The registered dataset `name`, or a DataError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown dataset {name!r}; use one of {', '.join(DATASETS)} (see `automtl data list`)"
        ) from None


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for `name`, in order (an explicit data_dir is the only candidate)."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out: list[Path] = []
    root = os.environ.get("AUTOMTL_DATA")
    if root:
        out += [Path(root).expanduser() / name, Path(root).expanduser() / f"{name}-sample"]
    out.append(Path.home() / ".cache" / "automtl" / name)
    return out


def resolve_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The first candidate folder that holds the dataset's files (else the first candidate)."""
    info = get_info(name)
    cands = candidate_dirs(name, data_dir)
    for c in cands:
        if c.is_dir() and (info.present is None or info.present(c)):
            return c
    return cands[0]


def files_present(name: str, data_dir: str | Path | None = None) -> bool:
    """Whether the dataset can be loaded without generating or downloading anything."""
    info = get_info(name)
    if not info.needs_files:
        return True
    d = resolve_data_dir(name, data_dir)
    return d.is_dir() and (info.present is None or info.present(d))


def resolve_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with `options`; unknown option names are a DataError."""
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        allowed = ", ".join(info.options) or "none"
        raise DataError(
            f"dataset {info.name!r}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    return {**info.options, **{k: _typed_option(info, k, v) for k, v in options.items()}}


def check_data_config(cfg: DataConfig, where: str) -> dict[str, Any]:
    """`resolve_options` for the dataset of `cfg`, loading nothing; an unknown dataset or a bad
    option is a `ConfigError` naming `where` (the file that set it)."""
    from automtl.errors import ConfigError

    try:
        return resolve_options(get_info(cfg.name), dict(cfg.options))
    except DataError as exc:
        raise ConfigError(f"{where}: data: {exc}") from None


def _typed_option(info: DatasetInfo, key: str, value: Any) -> Any:
    """An option value of its default's type, finite and in range (seeds fit the RNG)."""
    from automtl._typed import check_float, check_int
    from automtl.errors import ConfigError

    default = info.options[key]
    where = f"dataset {info.name!r} option"
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key}: expected true/false, got {value!r}")
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}: expected a whole number (e.g. {key}={default}), "
                                  f"got {value!r}")
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
            return check_int(value, key)
        if isinstance(default, float):
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{key}: expected a number, got {value!r}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key}: expected a number, got {value!r}")
            return check_float(value, key)
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
    except ConfigError as exc:
        raise DataError(f"{where} {exc}") from None
    return value


def parse_options(items: list[str]) -> dict[str, Any]:
    """["rows=20000", "schema=ali-ccp"] -> {"rows": 20000, "schema": "ali-ccp"} (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"option {item!r}: expected KEY=VALUE, e.g. rows=20000")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


_MEMO: dict[str, Dataset] = {}


def load_dataset(cfg: DataConfig | str) -> Dataset:
    """Load the dataset described by `cfg` (memoised per process: same cfg -> same object)."""
    if isinstance(cfg, str):
        cfg = DataConfig(name=cfg)
    info = get_info(cfg.name)
    opts = resolve_options(info, dict(cfg.options))
    data_dir = resolve_data_dir(cfg.name, cfg.data_dir) if info.needs_files else None
    if info.needs_files and not files_present(cfg.name, cfg.data_dir):
        cands = candidate_dirs(cfg.name, cfg.data_dir)
        for c in cands:
            special = info.hint(c) if info.hint is not None and c.is_dir() else None
            if special:
                raise DataError(special)
        looked = ", ".join(str(p) for p in cands)
        raise DataError(f"{cfg.name}: no data files found (looked in {looked}); "
                        f"get {info.source}, then {info.get_data}")
    key = json.dumps([cfg.name, str(data_dir), opts], sort_keys=True, default=str)
    ds = _MEMO.get(key)
    if ds is None:
        ds = info.loader(data_dir, opts)
        _MEMO[key] = ds
    return ds


def clear_memo() -> None:
    """Forget datasets loaded in this process (tests that rewrite files use it)."""
    _MEMO.clear()
