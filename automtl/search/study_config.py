"""Study presets (``studies/*.yaml``): dataset, objectives, search space, budget, sampler, pruner.

A preset is a `StudyConfig` loaded strictly (unknown keys and wrong types are `ConfigError`s
naming the file and YAML path). `automtl search --dataset NAME` uses the preset of that name, or,
for a registered dataset without a preset, a default study on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from automtl._typed import OneOf, from_dict
from automtl.config import DataConfig, TrainConfig
from automtl.errors import ConfigError
from automtl.resources import find_named_yaml, list_named_yaml
from automtl.search.defaults import PRUNER_KINDS
from automtl.search.objectives import COST_OBJECTIVES, CostObjective
from automtl.search.samplers import sampler_names
from automtl.yamlio import load_yaml


def _pruner_kinds() -> tuple[str, ...]:
    return PRUNER_KINDS


Sampler = Annotated[str, OneOf(sampler_names)]  # a name of `automtl.search.samplers.SAMPLERS`


@dataclass
class PrunerConfig:
    """Pareto-aware successive-halving pruning (see `automtl.search.pruner`)."""

    kind: Annotated[str, OneOf(_pruner_kinds)] = "pareto"
    min_epoch: int = 1  # never prune before this epoch
    warmup_trials: int = 3  # a rung decides only once this many other trials reached it
    reduction_factor: float = 3.0  # keep the best 1/reduction_factor of a rung (by Pareto rank)
    rungs: Literal["every", "geometric"] = "every"  # every epoch, or min_epoch * eta^k
    # what a trial is ranked by at a rung: that epoch's values ("epoch"), or the values of its
    # best epoch so far by mean validation AUC ("best": what the trial would return if stopped
    # now, the epoch the trainer's early stopping keeps). Defaults best / warm-up 3 (were epoch /
    # 5): on the issue-15 efficiency runs they kept the whole front and trained fewer epochs
    # (benchmarks/RESULTS.md, issue 15, "the pruner default")
    score: Literal["epoch", "best"] = "best"

    def validate(self) -> None:
        if self.min_epoch < 1:
            raise ConfigError(f"min_epoch: must be >= 1, got {self.min_epoch}")
        if self.warmup_trials < 1:
            raise ConfigError(f"warmup_trials: must be >= 1, got {self.warmup_trials}")
        if self.reduction_factor <= 1.0:
            raise ConfigError(f"reduction_factor: must be > 1, got {self.reduction_factor}")


@dataclass
class BudgetConfig:
    """A search budget in baseline trainings with a rows rung (see `automtl.search.budget`)."""

    # one training = the study's epochs over the whole training split (what a baseline costs);
    # baselines, probes and finals together never train more than this many
    trainings: float = 3.0
    rows_fraction: float = 0.1  # a probe trains this fraction of epoch 1, then is ranked
    finals: int = 1  # the best probes trained in full (from scratch, same seed) at the end
    # a final's training time per row at most this multiple of the baselines' (measured at the
    # rows rung: CPU seconds on CPU, wall on GPU), so the finals cost about what a baseline does;
    # None (or no baseline to measure against): no cap, the best probe at the rung however slow
    final_cost: float | None = None

    def validate(self) -> None:
        if not 0.0 < self.rows_fraction < 1.0:
            raise ConfigError(f"rows_fraction: must be in (0, 1), got {self.rows_fraction}")
        if self.finals < 1:
            raise ConfigError(f"finals: must be >= 1, got {self.finals}")
        if self.final_cost is not None and not 0.0 < self.final_cost < float("inf"):
            raise ConfigError(f"final_cost: must be a positive number, got {self.final_cost}")
        if not 0.0 < self.trainings < float("inf"):
            raise ConfigError(f"trainings: must be a positive number, got {self.trainings}")


@dataclass
class StudyConfig:
    """One study preset: what to search, on which data, with which budget."""

    name: str = "synthetic"  # default study name (`--study-name` overrides)
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    # validation metrics to maximise, e.g. [ctr_auc, cvr_auc]; None (key omitted) = every
    # `{task}_auc`; an empty list is refused (it would silently mean the default)
    objectives: list[str] | None = None
    space: str = "default"  # a shipped space name or a YAML path (relative to the preset file)
    epochs: int = 3  # per trial (early stopping may end sooner)
    n_trials: int = 20
    timeout: float | None = None  # seconds for the whole search
    sampler: Sampler = "tpe"
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    seed: int = 0  # sampler seed and every trial's training seed
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides for every trial
    # TrialConfig files (relative to the preset) run first, as trials 0..k-1 of a new study;
    # ones the space cannot express on the dataset are skipped with a note (automtl.search.enqueue)
    enqueue: list[str] = field(default_factory=list)
    # TrialConfig files run first among the probes (after the baselines); unlike baselines they
    # are ranked at the rows rung like sampled trials (e.g. a wide-first design); need `budget:`
    probes: list[str] = field(default_factory=list)
    # the probes' weight decay scaled to the data: the space's value nearest this / training
    # rows (Adam's L2 wd is a logistic regression's C = 1 / (wd x rows), whose best value moves
    # little with the rows; benchmarks/RESULTS.md, issue 15); None: as the probe files set it
    probe_l2_rows: float | None = None
    # total compute in baseline trainings; None = n_trials / timeout only (automtl.search.budget)
    budget: BudgetConfig | None = None
    # serving-cost constraints: trials above them are infeasible (never on the front)
    max_params: int | None = None  # trainable parameters
    max_latency_ms: float | None = None  # inference ms per 1,000 rows on the training device
    # optional third objective, minimised: latency (-> latency_ms) or params (-> n_params)
    cost_objective: CostObjective | None = None

    def validate(self) -> None:
        if not self.name.strip():
            raise ConfigError("name: must not be empty")
        if self.objectives is not None and not self.objectives:
            raise ConfigError("objectives: the list is empty; name the metrics to maximise "
                              "(e.g. [ctr_auc, cvr_auc]) or omit the key for every task's AUC")
        if len(set(self.objectives or [])) != len(self.objectives or []):
            raise ConfigError(f"objectives: duplicates in {self.objectives}")
        for name in ("epochs", "n_trials"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout: must be > 0, got {self.timeout}")
        for key in ("epochs", "seed"):
            if key in self.train:
                raise ConfigError(f"train.{key}: set it at the top level of the preset ({key}:)")
        if self.max_params is not None and self.max_params <= 0:
            raise ConfigError(f"max_params: must be > 0, got {self.max_params}")
        if self.max_latency_ms is not None and not 0 < self.max_latency_ms < float("inf"):
            raise ConfigError(f"max_latency_ms: must be a positive number, got "
                              f"{self.max_latency_ms}")
        if self.probes and self.budget is None:
            raise ConfigError("probes: needs a budget: (probes are ranked at its rows rung); "
                              "add budget: {trainings: 3} or move them to enqueue:")
        if self.probe_l2_rows is not None and not 0 < self.probe_l2_rows < float("inf"):
            raise ConfigError(f"probe_l2_rows: must be a positive number, got "
                              f"{self.probe_l2_rows}")
        if self.budget is not None:
            try:  # again here: the command line's --budget replaces a loaded (checked) budget
                self.budget.validate()
            except ConfigError as exc:
                raise ConfigError(f"budget: {exc}") from None
            least = len(self.enqueue) + self.budget.finals + self.budget.rows_fraction
            if self.budget.trainings < least:
                raise ConfigError(
                    f"budget.trainings: {self.budget.trainings:g} cannot pay for the "
                    f"{len(self.enqueue)} enqueued baselines, {self.budget.finals} final(s) and "
                    f"one probe ({least:g} trainings); raise it or enqueue fewer baselines")
        try:
            from_dict(TrainConfig, self.train)
        except ConfigError as exc:
            raise ConfigError(f"train.{str(exc)}") from None


def resolve_objectives(cfg: StudyConfig, dataset: Any, where: str = "") -> list[str]:
    """The study's objectives checked against `dataset.metric_names()` (default: task AUCs),
    then its cost objective if it has one (`automtl.search.objectives`)."""
    metric_names = list(dataset.metric_names())
    cost = [COST_OBJECTIVES[cfg.cost_objective]] if cfg.cost_objective else []
    if not cfg.objectives:
        return [f"{t.name}_auc" for t in dataset.tasks] + cost
    missing = [o for o in cfg.objectives if o not in metric_names]
    if missing:
        prefix = f"{where}: " if where else ""
        hint = ""
        if missing[0] in COST_OBJECTIVES.values():
            key = next(k for k, v in COST_OBJECTIVES.items() if v == missing[0])
            hint = f"; a serving cost is an objective through cost_objective: {key}"
        raise ConfigError(f"{prefix}objectives: {missing[0]!r} is not a metric of dataset "
                          f"{cfg.data.name!r} (available: {', '.join(metric_names)}){hint}")
    return list(cfg.objectives) + cost


def load_study_config(path: str | Path) -> StudyConfig:
    """Load a study preset file; a relative `space` path is taken relative to the file."""
    p = Path(path)
    cfg = from_dict(StudyConfig, load_yaml(p), where=str(p))
    local = p.parent / cfg.space
    if cfg.space.endswith((".yaml", ".yml")) and local.is_file():
        cfg.space = str(local)
    for key in ("enqueue", "probes"):
        entries = getattr(cfg, key)
        for i, entry in enumerate(entries):
            target = Path(entry) if Path(entry).is_absolute() else p.parent / entry
            if not target.is_file():
                raise ConfigError(f"{p}: {key}[{i}]: {entry}: no such TrialConfig file (paths "
                                  "are relative to the preset); fix the path")
            entries[i] = str(target)
    return cfg


def study_preset(name_or_path: str) -> StudyConfig:
    """A shipped preset by name (``synthetic``, ``ali-ccp`` ...) or a preset file by path."""
    path = find_named_yaml("studies", name_or_path)
    if path is None:
        raise ConfigError(f"--study-config {name_or_path}: no such file or preset "
                          f"(presets: {', '.join(list_presets())})")
    return load_study_config(path)


def study_for_dataset(dataset: str) -> StudyConfig:
    """The preset named `dataset`, else a default study on the registered dataset `dataset`."""
    path = find_named_yaml("studies", dataset)
    if path is not None and not Path(dataset).is_file():
        return load_study_config(path)
    from automtl.data import get_info  # raises a DataError listing the known datasets

    try:
        get_info(dataset)
    except ConfigError:
        raise
    except Exception as exc:  # DataError: unknown name; add the presets to the hint
        raise type(exc)(f"{exc}; presets: {', '.join(list_presets())}") from None
    return StudyConfig(name=dataset, data=DataConfig(name=dataset))


def list_presets() -> list[str]:
    """Names of the shipped study presets."""
    return list_named_yaml("studies")


def apply_overrides(cfg: StudyConfig, overrides: dict[str, Any]) -> None:
    """Set the dotted fields of `cfg` given in `overrides` (e.g. "pruner.kind"); None leaves a
    field as the preset has it. The command line's options, applied in one step."""
    for path, value in overrides.items():
        if value is None:
            continue
        *parents, last = path.split(".")
        target: Any = cfg
        for part in parents:
            target = getattr(target, part)
        if not hasattr(target, last):
            raise AttributeError(f"StudyConfig has no field {path!r}")  # a bug, not user input
        setattr(target, last, value)


def size_search(cfg: StudyConfig, n_trials: int | None, budget: float | None) -> None:
    """The command line's sizing: `budget` (baseline trainings) sets the preset's budget; a
    trial count without one sizes the search by trials alone (the budget and its probes go)."""
    if budget is not None:
        cfg.budget = BudgetConfig(**{**vars(cfg.budget or BudgetConfig()), "trainings": budget})
    elif n_trials is not None:
        cfg.budget, cfg.probes = None, []


__all__ = [
    "BudgetConfig", "PrunerConfig", "Sampler", "StudyConfig", "apply_overrides", "list_presets",
    "load_study_config", "resolve_objectives", "size_search", "study_for_dataset", "study_preset",
]
