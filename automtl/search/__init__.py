"""automtl.search: search spaces, study presets, the search loop, Pareto pruning and storage."""

from automtl.search.store import (
    DEFAULT_STORAGE,
    FrontRow,
    Store,
    make_storage,
    mask_url,
    objective_names,
    open_study,
    sqlite_path,
    study_names,
)

__all__ = [
    "DEFAULT_STORAGE", "FrontRow", "Store", "make_storage", "mask_url", "objective_names",
    "open_study", "sqlite_path", "study_names",
]
