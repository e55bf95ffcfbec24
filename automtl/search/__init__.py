"""automtl.search: search spaces, study presets, the search loop, Pareto pruning and storage.

A thin public face over modules of one concern each (`space`, `study_config`, `prepare`,
`runner`, `pruner`, `selection`, `storage`, `store`, `distributed/`). Names load on first use, so
that `automtl.search.storage` or `automtl.search.defaults` (what `automtl studies` / `pareto` /
`--help` need) can be imported without the training stack (torch) that the runner brings.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "automtl.search.dbopen": (
        "check_database", "open_study_readonly", "readonly_storage", "require_automtl_study",
    ),
    "automtl.search.dburl": ("mask_url", "scrub", "sqlite_path"),
    "automtl.search.defaults": ("DEFAULT_STORAGE", "STORAGE_ENV"),
    "automtl.search.distributed": (
        "Budget", "Heartbeat", "WorkersView", "launch_workers", "prepare_shared_study",
        "run_worker", "search_with_workers",
    ),
    "automtl.search.locks": ("StudyLock", "study_lock"),
    "automtl.search.pruner": (
        "EpochRecorder", "ParetoPruner", "PruneDecision", "decide", "is_rung", "nondominated_ranks",
    ),
    "automtl.search.prepare": ("prepare_study", "trial_base"),
    "automtl.search.runner": (
        "SearchListener", "SearchResult", "checkpoint_dir", "optimize_study", "run_search",
        "weight_names",
    ),
    "automtl.search.reeval": ("reevaluate", "top_front"),
    "automtl.search.samplers": ("SAMPLERS", "make_sampler", "sampler_names"),
    "automtl.search.selection": (
        "Selection", "knee_scores", "parse_selection", "resolve_name", "select",
    ),
    "automtl.search.space": ("list_spaces", "load_space", "load_space_doc", "parse_space"),
    "automtl.search.space_nodes": (
        "Choice", "Fixed", "Option", "Range", "SearchSpace", "SpaceContext", "Toggle",
    ),
    "automtl.search.front": ("FrontRow", "SweepRow", "front_points"),
    "automtl.search.storage": (
        "db_error", "enable_sqlite_wal", "engine_kwargs", "make_storage", "objective_names",
        "open_study", "study_names",
    ),
    "automtl.search.store": ("Store", "compute_front", "read_or"),
    "automtl.search.study_config": (
        "BudgetConfig", "PrunerConfig", "StudyConfig", "list_presets", "load_study_config",
        "resolve_objectives", "size_search", "study_for_dataset", "study_preset",
    ),
    "automtl.search.budget": ("BudgetState", "budget_state", "pick_finals", "trial_cost"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'automtl.search' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__


# `automtl.search(...)` calls automtl.api.search (this subpackage shares the name)
from automtl.api import call_through  # noqa: E402

call_through(__name__, "search")
