"""What automtl stores beside Optuna: one typed, versioned record per study (`StudyMeta`) and per
trial (`TrialMeta`), kept as Optuna user attributes (one attribute per field, under the field's
name, so optuna-dashboard and older automtl versions read the same keys).

This module is the only one that knows those keys. Reading goes through the `_typed` loader
(types checked; keys this version does not know, e.g. written by a newer automtl, are ignored);
writing checks the field names and types before anything is stored. `META_VERSION` is stored with
each new study; studies written before it existed have none and read as version 0, which has the
same fields. No torch, no sqlalchemy: `automtl studies` and `pareto` read these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from automtl._typed import from_dict, to_dict
from automtl.errors import ConfigError

META_VERSION = 1

R = TypeVar("R", bound="_Record")


class _HasAttrs(Protocol):
    @property
    def user_attrs(self) -> dict[str, Any]: ...

    def set_user_attr(self, key: str, value: Any) -> None: ...


class _Record:
    """Shared read/write of a record kept as user attributes."""

    @classmethod
    def read(cls: type[R], source: Mapping[str, Any] | Any) -> R:
        """The record of a study/trial (anything with `user_attrs`) or of a plain attribute dict."""
        attrs = source if isinstance(source, Mapping) else source.user_attrs
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        known = {k: v for k, v in attrs.items() if k in names}
        try:
            return from_dict(cls, known)
        except ConfigError:  # a study automtl did not write may use a key differently
            return from_dict(cls, {k: v for k, v in known.items() if _fits(cls, k, v)})

    @classmethod
    def attrs(cls, **values: Any) -> dict[str, Any]:
        """The user attributes that store these fields (checked against this record's fields),
        e.g. for `optuna.Study.enqueue_trial(user_attrs=...)`."""
        from_dict(cls, values, where=f"{cls.__name__} to store")  # a typo or wrong type: a bug
        return {key: to_dict(value) for key, value in values.items()}

    @classmethod
    def write(cls, target: _HasAttrs, **values: Any) -> None:
        """Store the given fields on a study or trial (checked against this record's fields)."""
        for key, value in cls.attrs(**values).items():
            target.set_user_attr(key, value)

    @classmethod
    def pick(cls, source: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
        """The stored fields among `names` that `source` has (for copies such as the front)."""
        return {k: source[k] for k in names if k in source}


def _fits(cls: type, key: str, value: Any) -> bool:
    try:
        from_dict(cls, {key: value})
    except ConfigError:
        return False
    return True


@dataclass
class StudyMeta(_Record):
    """A study's settings, written by `automtl search` / `automtl study create`."""

    objectives: list[str] = field(default_factory=list)
    dataset: dict[str, Any] | None = None  # DataConfig as plain data
    space: str | None = None  # the space's name
    space_doc: Any = None  # the space document the study samples (a copy, so edits don't leak)
    preset: str | None = None
    automtl_version: str | None = None
    baselines: list[str] = field(default_factory=list)
    baselines_skipped: list[str] = field(default_factory=list)
    warm_start: dict[str, Any] | None = None  # {"study": name, "trials": [sources]}
    study_config: dict[str, Any] | None = None  # StudyConfig as plain data (the latest run's)
    n_trials: int | None = None
    target_trials: int | None = None  # workers stop when the trial slots reach it
    heartbeat: dict[str, int] | None = None  # {"interval": s, "grace": s}
    meta_version: int = 0

    @property
    def made_by_automtl(self) -> bool:
        """Whether automtl wrote this study (it refuses to run or change other studies)."""
        return self.study_config is not None or self.automtl_version is not None


@dataclass
class TrialMeta(_Record):
    """A trial's record: its config and results, or why it was pruned or failed."""

    config: dict[str, Any] | None = None  # TrialConfig as plain data
    arch: str | None = None
    bottom: str | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)  # at the best epoch
    test_metrics: dict[str, float] = field(default_factory=dict)  # at the best epoch
    n_params: int | None = None
    latency_ms: float | None = None  # per 1,000 rows, inference on the training device
    samples_per_s: float | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    seconds: float | None = None
    device: str | None = None
    checkpoint: str | None = None
    preference: dict[str, float] | None = None  # conditioned: the reported weight vector
    weight_names: dict[str, str] | None = None
    fail_reason: str | None = None
    fail_traceback: str | None = None
    prune_reason: str | None = None
    pruned_rung: int | None = None  # 0: the rows rung (automtl.search.budget)
    train_passes: float | None = None  # passes over the training split trained (budget)
    rung_seconds_per_row: float | None = None  # training time per row at the rows rung (budget)
    final_of: int | None = None  # a budget's final: the probe whose configuration it trains
    worker: str | None = None  # "host:pid" of the worker that ran it
    enqueued: str | None = None  # where an enqueued trial's configuration came from
    reeval: dict[str, Any] | None = None  # {metric: {"mean", "std", "n"}} (older studies)

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C (its slot goes back to the study)."""
        return str(self.fail_reason or "").startswith("interrupted")

    @property
    def stopped(self) -> bool:
        """Stopped from outside: by Ctrl-C, or its process killed (marked "stale: ..." when the
        study resumes or is repaired). Its configuration did not fail: a budget counts it for
        nothing, and an enqueued one is trained again (`automtl.search.enqueue.redo_trial`)."""
        return self.interrupted or str(self.fail_reason or "").startswith("stale:")

    @property
    def model(self) -> dict[str, Any]:
        """The model section of the config ({} when none was recorded)."""
        return dict((self.config or {}).get("model") or {})

    def label(self) -> str:
        """The trial's architecture label (`arch_label`)."""
        model = self.model
        return arch_label(self.arch or model.get("arch"), self.bottom or model.get("bottom"),
                          model.get("head"))


def stopped_from_outside(trial: Any) -> bool:
    """Whether a trial (an Optuna `FrozenTrial`) was stopped from outside: by Ctrl-C, killed
    and marked "stale: ..." (`TrialMeta.stopped`), or FAILed by Optuna's heartbeat check, which
    records no reason (every failure of automtl's own objective records one). Its
    configuration did not fail: a budget counts it for nothing, on one process or many."""
    meta = TrialMeta.read(trial)
    return meta.stopped or (trial.state.name == "FAIL" and meta.fail_reason is None)


def arch_label(arch: str | None, bottom: str | None = None, head: str | None = None) -> str:
    """The architecture label shown everywhere: arch[/bottom][+head], defaults left out
    (e.g. "mmoe", "ple+esmm", "mmoe/dtrn")."""
    text = str(arch or "?")
    if bottom and bottom != "shared":
        text += f"/{bottom}"
    if head and head != "plain":
        text += f"+{head}"
    return text


def count_states(trials: Iterable[Any], first: Sequence[str] = ()) -> dict[str, int]:
    """Trials by state name ("COMPLETE", "PRUNED" ...); the names in `first` come first, with 0
    when no trial has them."""
    counts = {name: 0 for name in first}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


# Trial fields copied into the Pareto-front table (for tables and exports without Optuna).
FRONT_FIELDS = ("arch", "bottom", "n_params", "latency_ms", "samples_per_s", "epochs_run",
                "checkpoint", "preference")

# Trial fields a dashboard shows beside a trial (its detail panel), and for a sweep point.
DETAIL_FIELDS = ("arch", "bottom", "n_params", "epochs_run", "fail_reason", "prune_reason",
                 "pruned_rung", "checkpoint")
POINT_FIELDS = ("arch", "bottom", "n_params")

__all__ = ["DETAIL_FIELDS", "FRONT_FIELDS", "POINT_FIELDS", "META_VERSION", "StudyMeta", "TrialMeta", "arch_label",
           "count_states", "stopped_from_outside"]
