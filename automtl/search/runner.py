"""The search loop behind `automtl search`: create (`prepare.prepare_study`) or resume a
multi-objective Optuna study, train one `TrialConfig` per trial, record per-epoch metrics, prune,
keep the Pareto front current.

Every setting a worker needs lives in the study's record (`StudyMeta`: study config, space
document, objectives, dataset), so `optimize_study` can join a study created elsewhere.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import optuna

from automtl._typed import from_dict, to_dict
from automtl.config import DataConfig, TrialConfig
from automtl.errors import AutomtlError, TrialFailedError
from automtl.search import budget as budgeting
from automtl.search.constraints import ServingCost
from automtl.search.dbopen import require_automtl_study
from automtl.search.dburl import mask_url, sqlite_path
from automtl.search.defaults import DEFAULT_STORAGE
from automtl.search.enqueue import WarmStart, redo_trial
from automtl.search.front import FrontRow
from automtl.search import interrupt
from automtl.search.meta import StudyMeta, TrialMeta, count_states
from automtl.search.naming import confined_path
from automtl.search.objectives import is_cost, metric_objectives
from automtl.search.prepare import prepare_study, resume_check, trial_base
from automtl.search.pruner import EpochRecorder, ParetoPruner
from automtl.search.space import parse_space
from automtl.search.space_nodes import SpaceContext
from automtl.search.stale import mark_stale_failed, owner_name
from automtl.search.storage import make_storage, objective_names
from automtl.search.store import Store
from automtl.search.study_config import StudyConfig
from automtl.train.loop import Callback

States = optuna.trial.TrialState


class SearchListener:
    """Hooks through which a front end (the CLI's rich progress) follows a search. No-ops."""

    def on_search_start(self, study: optuna.Study, n_trials: int | None, n_existing: int) -> None:
        """The study is ready; `n_trials` new trials will run (None: until timeout)."""

    def on_trial_created(self, trial: optuna.Trial) -> None:
        """The trial exists in the storage and its config is sampled (user attributes may be set
        on it here); `on_trial_start` follows."""

    def on_trial_start(self, number: int, index: int, config: TrialConfig) -> None:
        """Trial `number` (the `index`-th of this run, 1-based) starts training `config`."""

    def on_batch(self, number: int, epoch: int, step: int, n_steps: int) -> None:
        """A training step finished."""

    def on_epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        """An epoch finished with these validation metrics."""

    def on_front_refreshed(self, seconds: float) -> None:
        """The study's front was refreshed after a COMPLETE trial, in `seconds` (row lock incl.)."""

    def on_trial_end(self, trial: optuna.trial.FrozenTrial, front: list[FrontRow]) -> None:
        """A trial finished (COMPLETE, PRUNED or FAIL); `front` is the current Pareto front."""


@dataclass
class SearchResult:
    """What a search run did and where its study lives."""

    study_name: str
    storage: str  # masked URL
    objectives: list[str]
    front: list[FrontRow]
    trials_run: int  # trials finished in this run
    states: dict[str, int]  # whole study: state name -> count
    seconds: float
    interrupted: bool = False
    trial_numbers: list[int] = field(default_factory=list)  # trials of this run


def weight_names(tasks: Sequence[Any]) -> dict[str, str]:
    """Names a user may give a task's weight by (task, cond metric name, with or without
    ``_auc``) -> the task name, e.g. {"cvr": "ctcvr", "ctr_auc": "ctr", ...}."""
    out: dict[str, str] = {}
    for t in tasks:
        for alias in (t.name, getattr(t, "cond_name", None)):
            if alias:
                out[alias] = out[f"{alias}_auc"] = t.name
    return out


def checkpoint_dir(storage_url: str, study_name: str) -> Path:
    """Folder for a study's trial checkpoints: next to a SQLite file, else ./automtl_checkpoints."""
    db = sqlite_path(storage_url)
    base = db.parent / f"{db.stem}_checkpoints" if db is not None else Path("automtl_checkpoints")
    return confined_path(base, study_name)


def _fail_reason(exc: BaseException) -> str:
    if isinstance(exc, (TrialFailedError, AutomtlError)):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "out of memory" in text.lower() or type(exc).__name__ == "OutOfMemoryError":
        return f"out of memory: {text}"
    return f"{type(exc).__name__}: {text}"


class _BatchForwarder(Callback):
    def __init__(self, listener: SearchListener, number: int) -> None:
        self.listener, self.number = listener, number

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        self.listener.on_batch(self.number, epoch, step, n_steps)


class _Objective:
    """One trial: sample a config, train it, return the objective vector."""

    def __init__(self, study: optuna.Study, store: Store, dataset: Any, storage_url: str,
                 device: str | None, save_checkpoints: bool, listener: SearchListener,
                 extra_callbacks: Sequence[Callback] = ()) -> None:
        meta = StudyMeta.read(study)
        self.cfg = from_dict(StudyConfig, meta.study_config, where=f"study {study.study_name}")
        self.space = parse_space(meta.space_doc, where=f"study {study.study_name} space",
                                 name=meta.space)
        self.objectives = objective_names(study)
        self.ctx = SpaceContext.from_dataset(dataset)
        self.study, self.store, self.dataset = study, store, dataset
        self.storage_url, self.device = storage_url, device
        self.save_checkpoints, self.listener = save_checkpoints, listener
        self.extra_callbacks = list(extra_callbacks)
        self.started = 0
        self.interrupted = False  # a Ctrl-C reached a trial (kept even if recording it fails)
        self.base = trial_base(self.cfg, device)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        from automtl.train import fit

        self.started += 1
        try:
            cfg = self.space.suggest(trial, self.ctx, self.base)
            if cfg.loss.weighting.scheme == "conditioned":
                # the point Optuna and the pruner see: the knee over the study's objectives
                cfg.loss.weighting.select_on = metric_objectives(self.objectives)
            # the owner (host:pid) lets a later run see that a RUNNING trial's process is gone
            TrialMeta.write(trial, config=to_dict(cfg), arch=cfg.model.arch,
                            bottom=cfg.model.bottom, worker=owner_name())
            self.listener.on_trial_created(trial)
            self.listener.on_trial_start(trial.number, self.started, cfg)
            epochs = cfg.train.epochs

            def on_metrics(epoch: int, metrics: dict[str, float]) -> None:
                self.listener.on_epoch(trial.number, epoch, epochs, metrics)

            cost = ServingCost(trial, self.dataset, {"max_params": self.cfg.max_params,
                                                     "max_latency_ms": self.cfg.max_latency_ms},
                               cfg.train.precision)
            # a cost objective's value, measured at train start, is part of every epoch's
            # record (the pruner ranks it with the metrics) and of the trial's val/test values
            fixed = cost.objective_values([o for o in self.objectives if is_cost(o)])
            meta = TrialMeta.read(trial)
            callbacks: list[Callback] = [
                cost,  # first: an infeasible trial stops before anything else runs
                *self._budget_callbacks(trial, meta, cfg, fixed),
                EpochRecorder(self.store, self.study.study_name, trial.number, on_metrics,
                              fixed=fixed),
                ParetoPruner(self.store, trial, self.objectives, self.cfg.pruner, epochs,
                             protected=budgeting.is_protected(meta), fixed=fixed),
                _BatchForwarder(self.listener, trial.number),
                *self.extra_callbacks,
            ]
            result = fit(cfg, self.dataset, callbacks=callbacks, device=self.device)
            interrupt.check()  # a Ctrl-C swallowed by a finalizer during training still stops
            result.val.update(fixed)
            result.test.update(fixed)
            values = [float(result.val.get(o, float("nan"))) for o in self.objectives]
            bad = [o for o, v in zip(self.objectives, values) if not math.isfinite(v)]
            if bad:
                raise TrialFailedError(f"objective {bad[0]} is not finite at the best epoch "
                                       f"({result.val.get(bad[0])})")
            if result.sweep:
                self.store.record_sweep(self.study.study_name, trial.number,
                                        [to_dict(p) for p in result.sweep],
                                        metric_objectives(self.objectives))
                TrialMeta.write(trial, preference=result.sweep[result.sweep_index].weights,
                                weight_names=weight_names(self.dataset.tasks))
            TrialMeta.write(trial, val_metrics=result.val, test_metrics=result.test,
                            n_params=result.n_params, samples_per_s=result.samples_per_s,
                            epochs_run=result.epochs_run, best_epoch=result.best_epoch,
                            seconds=result.seconds, device=result.device)
            if self.save_checkpoints:
                import torch

                folder = checkpoint_dir(self.storage_url, self.study.study_name)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"trial_{trial.number:05d}.pt"
                torch.save(result.model.state_dict(), path)
                TrialMeta.write(trial, checkpoint=str(path))
            return values
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            self.interrupted = True
            TrialMeta.write(trial, fail_reason="interrupted by the user (Ctrl-C)")
            redo_trial(self.study, trial.number)  # a baseline or final: the resumed run trains it
            raise
        except Exception as exc:
            TrialMeta.write(trial, fail_reason=_fail_reason(exc))
            if not isinstance(exc, (TrialFailedError, AutomtlError)) \
                    and "out of memory" not in str(exc).lower():
                TrialMeta.write(trial, fail_traceback=traceback.format_exc()[-4000:])
            raise


    def _budget_callbacks(self, trial: optuna.Trial, meta: TrialMeta, cfg: TrialConfig,
                          fixed: dict[str, float]) -> list[Callback]:
        """A budgeted study's pass meter and rows rung (`automtl.search.budget`)."""
        if self.cfg.budget is None:
            return []
        meter = budgeting.PassMeter(trial, len(self.dataset.splits["train"]),
                                    cfg.train.batch_size)
        rung = budgeting.RowsRung(
            store=self.store, trial=trial, fraction=self.cfg.budget.rows_fraction,
            evaluate=lambda model: _validate(model, self.dataset, cfg), meter=meter,
            probe=budgeting.is_probe(meta), fixed=fixed)
        return [meter, rung]


def _validate(model: Any, dataset: Any, cfg: TrialConfig) -> dict[str, float]:
    """Validation metrics of `model` on the split `fit` placed, as `fit` computes them."""
    from automtl.train import resolve_precision
    from automtl.train.cache import cached_split, device_split
    from automtl.train.loop import validate
    from automtl.train.sweep import Sweeper

    dev = next(model.parameters()).device
    val = cached_split(dataset, "val", dev) or device_split(dataset, "val", dev)
    precision = resolve_precision(cfg.train.precision, dev)
    sweeper = Sweeper.of(cfg.loss.weighting, dataset.tasks, cfg.train.eval_batch_size, precision)
    return validate(model, val, dataset.tasks, cfg.train.eval_batch_size, precision, sweeper)[0]


def _budget_step(study: optuna.Study, store: Store, cfg: StudyConfig,
                 objectives: Sequence[str]) -> bool:
    """After a trial of a budgeted study: enqueue the finals when the probes are done; False
    when the budget is spent (the search stops)."""
    if cfg.budget is None:
        return True
    state = budgeting.budget_state(study, cfg.budget, cfg.epochs, cfg.n_trials)
    action = state.action(cfg.budget.rows_fraction)
    if action == "promote":
        finals = budgeting.pick_finals(study, store, objectives, cfg.budget.finals,
                                       cfg.budget.final_cost)
        budgeting.enqueue_finals(study, finals)
        return bool(finals)
    return action == "run"


def _check_data_fits(dataset: Any, train: dict[str, Any]) -> None:
    """The data part of the memory plan before any trial: a data set that fits neither on the
    device nor on the host is one line with the numbers here, not a FAIL in every trial."""
    from automtl.train import resolve_device
    from automtl.train.memory import plan_run

    plan_run(dataset, resolve_device(train.get("device", "auto")), None)


def optimize_study(study: optuna.Study, *, storage_url: str, n_trials: int | None,
                   timeout: float | None = None, device: str | None = None,
                   save_checkpoints: bool = False, listener: SearchListener | None = None,
                   extra_callbacks: Sequence[Callback] = (),
                   store: Store | None = None) -> SearchResult:
    """Run `n_trials` more trials of a prepared study (settings from its user attributes).

    `store`: automtl's tables at `storage_url`, kept open by a caller that runs many short
    calls (a worker: one pooled connection for its life); by default one is opened and closed.

    Failing trials are stored FAIL with a `TrialMeta.fail_reason` and the loop goes on; Ctrl-C marks the
    running trial FAIL, keeps the database consistent and returns with `interrupted=True`.
    """
    listener = listener or SearchListener()
    own_store = store is None
    store = Store(storage_url) if store is None else store
    try:
        return _optimize(study, store, storage_url, n_trials, timeout, device, save_checkpoints,
                         listener, extra_callbacks)
    finally:
        if own_store:  # its pooled connection would otherwise stay open until a GC cycle
            store.dispose()


def _optimize(study: optuna.Study, store: Store, storage_url: str, n_trials: int | None,
              timeout: float | None, device: str | None, save_checkpoints: bool,
              listener: SearchListener, extra_callbacks: Sequence[Callback]) -> SearchResult:
    from automtl.data import load_dataset

    data_cfg = from_dict(DataConfig, StudyMeta.read(study).dataset)
    dataset = load_dataset(data_cfg)
    objective = _Objective(study, store, dataset, storage_url, device, save_checkpoints, listener,
                           extra_callbacks)
    _check_data_fits(dataset, objective.base["train"])
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state != States.WAITING}
    listener.on_search_start(study, n_trials, len(before))
    finished: list[int] = []

    def after_trial(st: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.append(trial.number)
        if trial.state == States.COMPLETE:
            t0 = time.perf_counter()
            front = store.refresh_front(st)
            listener.on_front_refreshed(time.perf_counter() - t0)
        else:
            front = store.front(st.study_name)
        listener.on_trial_end(trial, front)
        if not _budget_step(st, store, objective.cfg, objective.objectives):
            st.stop()  # the budget is spent

    started = time.perf_counter()
    interrupted = False
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are reported by the listener
    try:
        if _budget_step(study, store, objective.cfg, objective.objectives):
            study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(Exception,),
                           callbacks=[after_trial], gc_after_trial=False)
    except KeyboardInterrupt:
        interrupted = True
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        # Ctrl-C on a trial that another worker had already FAILed as stale (its heartbeat
        # starved past the grace period): Optuna cannot record the interrupt, but it is a stop.
        if not objective.interrupted:
            raise
        interrupted = True
    finally:
        optuna.logging.set_verbosity(level)
    front = store.refresh_front(study)
    trials = study.get_trials(deepcopy=False)
    states = count_states(trials)
    numbers = [t.number for t in trials if t.number not in before]
    return SearchResult(study.study_name, mask_url(storage_url), objective.objectives, front,
                        len(finished), states, time.perf_counter() - started, interrupted,
                        sorted(numbers))


def run_search(cfg: StudyConfig, *, storage: str = DEFAULT_STORAGE, study_name: str | None = None,
               device: str | None = None, save_checkpoints: bool = False,
               listener: SearchListener | None = None,
               extra_callbacks: Sequence[Callback] = (),
               warm_start: WarmStart | None = None) -> SearchResult:
    """Create or resume the study of `cfg` in `storage` and run `cfg.n_trials` more trials
    (or until `cfg.timeout`). The library function behind `automtl search`."""
    from automtl.data import load_dataset

    name = study_name or cfg.name
    load_dataset(cfg.data)  # a data problem fails before any database is created (memoised)
    n_existing = 0
    try:  # an existing study is checked and repaired first; nothing is created for that
        rdb = make_storage(storage, must_exist=True)
    except AutomtlError:  # no database yet (or an unusable one): prepare_study, after its
        rdb = None        # checks of the space and the baselines, creates it or says why not
    if rdb is not None and name in optuna.get_all_study_names(rdb):
        old = optuna.load_study(study_name=name, storage=rdb)
        require_automtl_study(old, storage)
        resume_check(cfg, old)  # another dataset/space is refused before the repair below writes
        if StudyMeta.read(old).heartbeat is None:  # no heartbeats: a gone local run's trials
            mark_stale_failed(old, rdb, only_gone_owners=True)
        n_existing = len(old.get_trials(deepcopy=False))
    # A resumed study gets a fresh sampler seed, so a random sampler does not repeat itself.
    study = prepare_study(cfg, storage, name, sampler_seed=cfg.seed + n_existing,
                          warm_start=warm_start)
    return optimize_study(study, storage_url=storage, n_trials=cfg.n_trials, timeout=cfg.timeout,
                          device=device, save_checkpoints=save_checkpoints, listener=listener,
                          extra_callbacks=extra_callbacks)


__all__ = [
    "SearchListener", "SearchResult", "checkpoint_dir", "optimize_study", "run_search",
    "weight_names",
]
