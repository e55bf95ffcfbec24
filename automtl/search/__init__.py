"""automtl.search: search spaces, study presets, the search loop, Pareto pruning and storage."""

from automtl.search.pruner import (
    EpochRecorder,
    ParetoPruner,
    PruneDecision,
    decide,
    is_rung,
    nondominated_ranks,
)
from automtl.search.runner import (
    SearchListener,
    SearchResult,
    checkpoint_dir,
    make_sampler,
    optimize_study,
    prepare_study,
    reevaluate,
    run_search,
    top_front,
    weight_names,
)
from automtl.search.space import (
    Choice,
    Fixed,
    Option,
    Range,
    SearchSpace,
    SpaceContext,
    Toggle,
    list_spaces,
    load_space,
    parse_space,
)
from automtl.search.selection import (
    Selection,
    knee_scores,
    parse_selection,
    resolve_name,
    select,
)
from automtl.search.store import (
    DEFAULT_STORAGE,
    FrontRow,
    Store,
    SweepRow,
    front_points,
    make_storage,
    mask_url,
    objective_names,
    open_study,
    sqlite_path,
    study_names,
)
from automtl.search.study_config import (
    PrunerConfig,
    StudyConfig,
    list_presets,
    load_study_config,
    resolve_objectives,
    study_for_dataset,
    study_preset,
)

__all__ = [
    "Choice", "DEFAULT_STORAGE", "EpochRecorder", "Fixed", "FrontRow", "Option", "ParetoPruner",
    "PruneDecision", "PrunerConfig", "Range", "SearchListener", "SearchResult", "SearchSpace",
    "SpaceContext", "Store", "StudyConfig", "Toggle", "checkpoint_dir", "decide", "is_rung",
    "list_presets", "list_spaces", "load_space", "load_study_config", "make_sampler",
    "make_storage", "mask_url", "nondominated_ranks", "objective_names", "open_study",
    "optimize_study", "parse_space", "prepare_study", "reevaluate", "resolve_objectives",
    "run_search", "sqlite_path", "study_for_dataset", "study_names", "study_preset", "top_front",
    "Selection", "knee_scores", "parse_selection", "resolve_name", "select",
    "SweepRow", "front_points", "weight_names",
]
