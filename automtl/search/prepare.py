"""Creating or re-opening a search study: the space document and preset baselines are checked
and stored in the study's record (`StudyMeta`) before any trial, so every worker that joins later
samples the same space with the same settings."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import optuna

import automtl
from automtl._typed import to_dict
from automtl.config import load_trial_config
from automtl.errors import AutomtlError, ConfigError
from automtl.search.dbopen import require_automtl_study
from automtl.search.defaults import DEFAULT_STORAGE
from automtl.search.enqueue import (
    Seed,
    WarmStart,
    check_warm_start,
    config_params,
    enqueue_seeds,
    warm_start_seeds,
)
from automtl.search.meta import META_VERSION, StudyMeta, TrialMeta
from automtl.search.objectives import directions
from automtl.search.samplers import make_sampler
from automtl.search.space import load_space_doc, parse_space
from automtl.search.space_nodes import Choice, Range, SearchSpace, SpaceContext
from automtl.search.storage import db_error, make_storage
from automtl.search.study_config import StudyConfig, resolve_objectives


def _space_for(cfg: StudyConfig) -> tuple[SearchSpace, dict[str, Any]]:
    doc, path = load_space_doc(cfg.space)  # `extends:` resolved: the study stores it whole
    space = parse_space(json.loads(json.dumps(doc)), where=str(path), name=path.stem)
    return space, doc


def trial_base(cfg: StudyConfig, device: str | None = None) -> dict[str, Any]:
    """The plain-dict part of every trial's config that the study fixes (data, epochs, seed)."""
    train = dict(cfg.train, epochs=cfg.epochs, seed=cfg.seed)
    if device is not None:
        train["device"] = device
    return {"data": to_dict(cfg.data), "train": train}


def _probe_space(space: SearchSpace, ctx: SpaceContext, cfg: StudyConfig) -> None:
    """Sample a few configs in memory, so a space that cannot serve this dataset (or that sets
    invalid values) is one clear error before the study starts, not a FAIL in every trial."""
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        space.suggest(probe.ask(), ctx, trial_base(cfg))


def scaled_weight_decay(space: SearchSpace, target: float) -> float:
    """The space's `train.weight_decay` value nearest `target` (log scale; a range is clamped),
    or `target` when the space does not sample it."""
    for node in space.nodes:
        if node.path != "train.weight_decay":
            continue
        if isinstance(node, Range):
            return min(max(target, node.low), node.high)
        if isinstance(node, Choice):
            values = [float(o.value) for o in node.options
                      if isinstance(o.value, (int, float)) and o.value > 0]
            if values:
                return min(values, key=lambda v: abs(math.log(v / target)))
    return target


def _baseline_seeds(cfg: StudyConfig, space: SearchSpace, ctx: SpaceContext,
                    kind: str = "baseline", n_train: int = 0) -> tuple[list[Seed], list[str]]:
    """The preset's `enqueue:` (kind "baseline") or `probes:` (kind "probe") files as seeds, and
    a note per file the space cannot express. With `probe_l2_rows`, a probe's weight decay is
    the space's value nearest probe_l2_rows / n_train (training rows)."""
    seeds, skipped = [], []
    for entry in (cfg.enqueue if kind == "baseline" else cfg.probes):
        label = "/".join(Path(entry).parts[-2:])
        doc = to_dict(load_trial_config(entry))
        if kind == "probe" and cfg.probe_l2_rows is not None and n_train > 0:
            doc["train"]["weight_decay"] = scaled_weight_decay(space,
                                                               cfg.probe_l2_rows / n_train)
        try:
            params = config_params(space, doc, ctx, trial_base(cfg), label)
        except ConfigError as exc:
            skipped.append(str(exc))
            continue
        seeds.append(Seed(f"{kind} {label}", params))
    return seeds, skipped


def trained_epochs(study: optuna.Study) -> set[int]:
    """The `train.epochs` of every trial of `study` that started (its stored config)."""
    out = set()
    for t in study.get_trials(deepcopy=False):
        epochs = ((TrialMeta.read(t).config or {}).get("train") or {}).get("epochs")
        if isinstance(epochs, int) and t.state != optuna.trial.TrialState.WAITING:
            out.add(epochs)
    return out


def check_budget_epochs(study: optuna.Study, epochs: int) -> None:
    """Refuse (`AutomtlError`) a budgeted run of `study` at `epochs` when its trials trained at
    other epochs: the budget's unit, one baseline training, is `epochs` passes, so the full
    trainings already made would be re-counted at the new epochs (reads only)."""
    other = sorted(trained_epochs(study) - {epochs})
    if other:
        shown = " and ".join(map(str, other)) + (" epoch" if other == [1] else " epochs")
        raise AutomtlError(
            f"study {study.study_name!r} trained its trials at {shown}, and its budget "
            f"counts baseline trainings of that many passes: resume it with --epochs {other[-1]}"
            f", or pass another --study-name to search at {epochs} epochs")


def check_resumable(study: optuna.Study, objectives: Sequence[str], data: dict[str, Any],
                    space_name: str, budget_epochs: int | None = None) -> None:
    """Refuse (`AutomtlError`) resuming `study` with other objectives, dataset or space (and,
    for a budgeted run, `budget_epochs`, see `check_budget_epochs`); reads only, so callers run
    it before any repair of the study (stale trials) writes."""
    meta = StudyMeta.read(study)
    name, hint = study.study_name, "; pass another --study-name to start a new study"
    if budget_epochs is not None:
        check_budget_epochs(study, budget_epochs)
    if (meta.objectives or objectives) != list(objectives):
        raise AutomtlError(f"study {name!r} optimises {meta.objectives}, not "
                           f"{list(objectives)}{hint}")
    if (meta.dataset if meta.dataset is not None else data) != data:
        raise AutomtlError(f"study {name!r} was made on dataset {meta.dataset}, not {data}{hint}")
    if (meta.space if meta.space is not None else space_name) != space_name:
        raise AutomtlError(f"study {name!r} was made with search space {meta.space!r}, not "
                           f"{space_name!r}{hint}")


def resume_check(cfg: StudyConfig, study: optuna.Study) -> None:
    """`check_resumable` for the study `cfg` would resume (before `prepare_study` writes)."""
    from automtl.data import load_dataset

    objectives = resolve_objectives(cfg, load_dataset(cfg.data), where=f"study {cfg.name}")
    check_resumable(study, objectives, to_dict(cfg.data), _space_for(cfg)[0].name,
                    cfg.epochs if cfg.budget is not None else None)


def prepare_study(cfg: StudyConfig, storage: str = DEFAULT_STORAGE,
                  study_name: str | None = None, *, sampler_seed: int | None = None,
                  rdb_kwargs: dict[str, Any] | None = None,
                  warm_start: WarmStart | None = None) -> optuna.Study:
    """Create the study of `cfg`, or load it if it exists with the same dataset, objectives and
    space (a mismatch is an `AutomtlError` suggesting another --study-name).

    A new study first enqueues the preset's baselines (`cfg.enqueue`); `warm_start` enqueues
    another study's front after them (see `warm_start_seeds`), new study or not.
    """
    from automtl.data import load_dataset

    name = study_name or cfg.name
    dataset = load_dataset(cfg.data)
    objectives = resolve_objectives(cfg, dataset, where=f"study {cfg.name}")
    space, space_doc = _space_for(cfg)
    ctx = SpaceContext.from_dataset(dataset)
    _probe_space(space, ctx, cfg)
    baselines, skipped = _baseline_seeds(cfg, space, ctx)
    probes, skipped_probes = _baseline_seeds(cfg, space, ctx, "probe",
                                             len(dataset.splits["train"]))
    if warm_start is not None:
        check_warm_start(warm_start, name, storage)
    transfer = warm_start_seeds(warm_start, space, ctx, trial_base(cfg), cfg.n_trials) \
        if warm_start is not None else []
    rdb = make_storage(storage, **(rdb_kwargs or {}))
    existing = name in optuna.get_all_study_names(rdb)
    if existing:  # never write into a study automtl did not create
        require_automtl_study(optuna.load_study(study_name=name, storage=rdb), storage)
    sampler = make_sampler(cfg.sampler, cfg.seed if sampler_seed is None else sampler_seed,
                           cfg.n_trials)
    try:
        study = optuna.create_study(storage=rdb, study_name=name, sampler=sampler,
                                    directions=directions(objectives),
                                    load_if_exists=True)
    except optuna.exceptions.StorageInternalError as exc:  # e.g. a read-only database file
        raise db_error(storage, exc.__cause__ or exc) from None
    data_dict = to_dict(cfg.data)
    if existing:
        check_resumable(study, objectives, data_dict, space.name,
                        cfg.epochs if cfg.budget is not None else None)
        # Same space name: the study keeps sampling its stored space document (`space_doc`),
        # so edits to a shipped space file never change the space of an existing study.
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(objectives)
        StudyMeta.write(study, objectives=objectives, dataset=data_dict, space=space.name,
                        space_doc=space_doc, preset=cfg.name,
                        automtl_version=automtl.__version__,
                        baselines=[s.source for s in baselines + probes],
                        baselines_skipped=skipped + skipped_probes,
                        meta_version=META_VERSION)
        enqueue_seeds(study, baselines + probes)
    if transfer:
        enqueue_seeds(study, transfer)
        StudyMeta.write(study, warm_start={"study": warm_start.study,  # type: ignore[union-attr]
                                           "trials": [s.source for s in transfer]})
    # The latest run's settings (epochs, pruner ...) are what workers joining later use.
    StudyMeta.write(study, study_config=to_dict(cfg), n_trials=cfg.n_trials)
    return study



__all__ = ["check_budget_epochs", "check_resumable", "prepare_study", "resume_check",
           "scaled_weight_decay", "trained_epochs", "trial_base"]
