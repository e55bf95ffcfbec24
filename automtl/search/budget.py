"""A search budget in baseline trainings: cheap probes at a rows rung, then the best trained in
full (synchronous successive halving over a rows fidelity; Jamieson & Talwalkar, AISTATS 2016;
Hyperband's data-subset resource, Li et al., JMLR 2018; ranked by Pareto rank as in MO-ASHA).

Unit. One baseline training = the study's `epochs` passes over the training split, what one
enqueued example costs. `budget: {trainings: B}` caps the whole study at B x epochs passes
(rows x epochs: the same on any device and under any load; benchmarks report CPU time beside it).
Each trial records the passes it trained (`TrialMeta.train_passes`, fractions included). The
unit is fixed per study: a budgeted run at other epochs than its trials trained at is refused
(`prepare.check_budget_epochs`), where counting would re-price the full trainings already made.

Plan. The enqueued baselines (and warm-start points) train in full first: they are the
guarantee that the front is never worse than what it starts from. Every other trial is a probe:
it trains `rows_fraction` f of epoch 1 (epoch 1 shuffles the training split with the trial's seed,
so these are a seeded subsample of it), is evaluated on the validation split, and stops; its
values are stored at epoch 0 of the per-epoch table (`ROWS_RUNG_EPOCH`; readers of epoch
histories skip it). Baselines record the same point on their way, so probes are ranked against
them. Probes run while their passes fit what the baselines and the finals leave, (B - k -
finals) x epochs, and n_trials allows; then the `finals` best probes (Pareto rank among probes and
baselines at the rung, then mean objective) are enqueued again and trained in full. Retraining
from scratch costs only f more: with the same seed the final's first f rows train exactly the
probe's model, and nothing is evaluated or resumed from a checkpoint. Why synchronous: with a
budget of ~1 spare training, an asynchronous rule (continue a trial that ranks well among those
seen so far) hands the whole budget to the first trial that beats the baselines at the rung.

Rounds. Once its finals are enqueued a round is over; what the budget still holds opens another
round (a resumed study with a larger `--budget`): new probes while their passes fit, then the
`finals` best probes not yet trained in full (earlier rounds' probes stay candidates); with room
for a final but not for a probe, the next best earlier probe is trained in full at once. A study
whose budget cannot pay for a final runs nothing (`spent_note` says so and names the fix).

Bounds: a single worker stays within B up to one batch: a probe trains f plus < 1 batch, and the
probes stop when what is left is less than the dearest probe so far (at least 2 f). With W workers, up to W - 1 probes in flight can overrun the
probe share, and two workers may both enqueue finals (each final is checked first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import optuna

from automtl.errors import AutomtlError
from automtl.search.dbopen import require_automtl_study
from automtl.search.meta import StudyMeta, TrialMeta, stopped_from_outside
from automtl.search.objectives import signs
from automtl.search.prepare import check_budget_epochs
from automtl.search.pruner import nondominated_ranks
from automtl.search.stale import heartbeat_source, running_trials
from automtl.search.storage import close_storage, make_storage
from automtl.search.store import Store
from automtl.search.study_config import BudgetConfig, StudyConfig
from automtl.train.loop import Callback, EpochRecord

ROWS_RUNG_EPOCH = 0  # where the rows rung's validation values are stored

States = optuna.trial.TrialState


def trial_cost(trial: optuna.trial.FrozenTrial) -> float:
    """Passes over the training split a trial trained (older trials: the epochs they ran)."""
    if trial.state == States.WAITING:  # nothing yet (Optuna's retry copies the dead attempt's)
        return 0.0
    meta = TrialMeta.read(trial)
    if meta.train_passes is not None:
        return float(meta.train_passes)
    if meta.epochs_run is not None:
        return float(meta.epochs_run)
    return float(meta.pruned_rung or 0)


def is_probe(meta: TrialMeta) -> bool:
    """Whether a trial of a budgeted study is a probe (sampled, or a preset's `probes:` seed)."""
    return meta.enqueued is None or meta.enqueued.startswith("probe ")


def is_protected(meta: TrialMeta) -> bool:
    """Baselines, warm-start points and finals train in full: never pruned."""
    return meta.enqueued is not None and not meta.enqueued.startswith("probe ")


class PassMeter(Callback):
    """Counts the training rows a trial consumes and records them as `TrialMeta.train_passes`
    at every epoch end and at the rows rung."""

    def __init__(self, trial: optuna.Trial, n_train: int, batch_size: int) -> None:
        self.trial, self.n_train, self.batch_size = trial, max(n_train, 1), batch_size
        self.rows = 0

    def on_train_start(self, model: Any) -> None:
        self.record()  # 0: a heartbeat retry starts with a copy of its dead attempt's passes

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        last = self.n_train - (n_steps - 1) * self.batch_size
        self.rows += self.batch_size if step < n_steps else last

    def record(self) -> None:
        TrialMeta.write(self.trial, train_passes=round(self.rows / self.n_train, 6))

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        self.record()


class RowsRung(Callback):
    """Trainer callback: after `fraction` of epoch 1 records the trial's passes, evaluates the
    model on the validation split (`evaluate(model) -> metrics`) and stores the values at
    `ROWS_RUNG_EPOCH`; a probe then stops (`optuna.TrialPruned`). Put it after `PassMeter`."""

    def __init__(self, *, store: Store, trial: optuna.Trial, fraction: float, evaluate: Any,
                 meter: PassMeter, probe: bool, fixed: Mapping[str, float] | None = None) -> None:
        self.store, self.trial, self.fraction = store, trial, fraction
        self.evaluate, self.meter, self.probe = evaluate, meter, probe
        self.fixed = dict(fixed or {})
        self.model: Any = None
        self.done, self.cuda, self.started = False, False, 0.0

    def on_train_start(self, model: Any) -> None:
        self.model = model
        self.cuda = next(model.parameters()).device.type == "cuda"
        self.started = self.clock()

    def clock(self) -> float:
        """CPU seconds of this process on a CPU device (the machine's load does not inflate
        them); wall seconds on a GPU, whose kernels the CPU clock does not see."""
        return time.perf_counter() if self.cuda else time.process_time()

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        if self.done or epoch != 1 or step < min(math.ceil(self.fraction * n_steps), n_steps):
            return
        self.done = True
        self.meter.record()
        # training cost per row so far: finals are capped by it (`BudgetConfig.final_cost`)
        TrialMeta.write(self.trial, rung_seconds_per_row=(self.clock() - self.started)
                        / max(self.meter.rows, 1))
        values = {**self.evaluate(self.model), **self.fixed}
        self.store.record_epoch(self.trial.study.study_name, self.trial.number, ROWS_RUNG_EPOCH,
                                values)
        if self.probe:
            reason = f"probe: trained {self.fraction:g} of epoch 1 (rows rung)"
            TrialMeta.write(self.trial, pruned_rung=ROWS_RUNG_EPOCH, prune_reason=reason)
            raise optuna.TrialPruned(reason)


@dataclass(frozen=True)
class BudgetState:
    """Where a budgeted study stands (passes over the training split). The current round's
    probes are those after the last final (all of them before the first finals)."""

    total: float  # the budget
    spent: float  # by every trial so far
    probe_share: float  # what the current round's probes may spend
    probe_spent: float  # by the current round's probes
    probes: int  # the current round's probes finished or running
    dearest_probe: float  # the most passes one probe has trained (any round)
    max_probes: int  # n_trials less the round's full trainings
    finals: list[int]  # trial numbers of the finals enqueued so far
    waiting: int  # enqueued trials not started
    candidates: int = 0  # probes stopped at the rung, within final_cost, no final trains yet
    # passes reserved or spent: full trainings at `epochs` each (failed ones at what they
    # trained), every probe at what it trained
    committed: float = 0.0
    full: int = 0  # baselines, warm-start points and finals not failed
    probes_all: int = 0  # probes of every round

    def action(self, fraction: float) -> str:
        """"run" (more probes / queued trials), "promote" (enqueue the finals) or "stop"."""
        if self.waiting:
            return "run"
        # the next probe costs f plus < 1 batch: reserve the dearest probe so far, at least 2 f
        if self.probe_spent + self.reserve(fraction) <= self.probe_share \
                and self.probes < self.max_probes:
            return "run"
        if self.probes or (self.candidates and self.probe_share >= -1e-9):
            return "promote"  # this round's probes are done, or a final fits but no probe
        return "stop"

    def reserve(self, fraction: float) -> float:
        return max(2 * fraction, self.dearest_probe)


def budget_state(study: optuna.Study, budget: BudgetConfig, epochs: int,
                 n_trials: int, gone: Collection[int] = ()) -> BudgetState:
    """The study's spending so far. A trial stopped from outside (Ctrl-C, or its process
    killed: `stopped_from_outside`, heartbeats or not) counts for nothing: it is redone (an
    enqueued one is enqueued again, by `redo_trial` or Optuna's heartbeat retry); a full
    training that failed otherwise counts what it trained and is not retried. `gone`: RUNNING trials whose process is gone, not yet marked
    (counted as stopped, an enqueued one as waiting for its redo)."""
    trials = study.get_trials(deepcopy=False)
    metas = [(t, TrialMeta.read(t)) for t in trials
             if not stopped_from_outside(t) and t.number not in gone]
    redo = sum(1 for t in trials if t.number in gone and TrialMeta.read(t).enqueued is not None)
    finals = [t.number for t, m in metas if m.final_of is not None]
    last = max(finals, default=-1)  # the current round: trials after the last final
    full = [t for t, m in metas if is_protected(m) and t.state != States.FAIL]
    failed = sum(trial_cost(t) for t, m in metas if is_protected(m) and t.state == States.FAIL)
    round_full = [t for t, m in metas if is_protected(m) and m.final_of is None and t.number > last]
    probes = [t for t, m in metas if is_probe(m) and t.state != States.WAITING]
    current = [t for t in probes if t.number > last]
    earlier = sum(trial_cost(t) for t in probes if t.number < last)
    total = budget.trainings * epochs
    return BudgetState(
        total=total, spent=sum(trial_cost(t) for t, _ in metas),
        probe_share=total - (len(full) + budget.finals) * epochs - failed - earlier,
        probe_spent=sum(trial_cost(t) for t in current), probes=len(current),
        dearest_probe=max((trial_cost(t) for t in probes), default=0.0),
        max_probes=n_trials - len(round_full) - budget.finals, finals=finals,
        waiting=sum(t.state == States.WAITING for t, _ in metas) + redo,
        candidates=len(final_candidates([t for t, _ in metas], budget.final_cost)),
        committed=len(full) * epochs + failed + sum(trial_cost(t) for t in probes),
        full=len(full), probes_all=len(probes))


def spent_note(study: optuna.Study, budget: BudgetConfig, epochs: int, n_trials: int,
               gone: Collection[int] = ()) -> str | None:
    """One line when `budget` leaves nothing to run in `study` (None when it does): how much the
    study has trained, and the --budget that extends it (`gone`: see `budget_state`)."""
    state = budget_state(study, budget, epochs, n_trials, gone)
    if state.action(budget.rows_fraction) != "stop":
        return None
    # a final fits once the share is >= 0; new probes once it also holds one probe's reserve
    base = state.committed + budget.finals * epochs
    final_at = math.ceil(base / epochs * 100 - 1e-6) / 100
    probe_at = math.ceil((base + state.reserve(budget.rows_fraction)) / epochs * 100 - 1e-6) / 100
    extend = (f"--budget {final_at:g} or more trains the next best probe in full, "
              f"{probe_at:g} or more probes again first" if state.candidates
              else f"--budget {probe_at:g} or more runs new probes, then their best in full")
    return (f"budget spent: study {study.study_name!r} has trained {state.spent / epochs:.2f} "
            f"of a budget of {budget.trainings:g} baseline trainings ({state.full} in full, "
            f"{state.probes_all} probes), so no trial runs; to extend it, {extend}; for a new "
            "study, --study-name NAME")


def resume_note(cfg: StudyConfig, storage: str, study_name: str | None = None) -> str | None:
    """`spent_note` for the existing study that `cfg` would resume in `storage` (None: no budget,
    no such automtl study, or budget left). Reads only: run it before `prepare_study` writes."""
    if cfg.budget is None:
        return None
    name = study_name or cfg.name
    try:
        rdb = make_storage(storage, must_exist=True)
    except AutomtlError:  # no database (or an unusable one: the search itself says so)
        return None
    try:
        if name not in optuna.get_all_study_names(rdb):
            return None
        study = optuna.load_study(study_name=name, storage=rdb)
        try:
            require_automtl_study(study, storage)
        except AutomtlError:  # not automtl's study: the search refuses it with its own line
            return None
        check_budget_epochs(study, cfg.epochs)  # another unit would miscount what was spent
        # what the search marks FAIL (and redoes) first: RUNNING trials of a gone local run
        gone = [] if StudyMeta.read(study).heartbeat is not None else [
            r.number for r in running_trials(study, heartbeat_source(rdb))
            if r.stale and r.heartbeat_age_s is None]
        return spent_note(study, cfg.budget, cfg.epochs, cfg.n_trials, gone)
    finally:
        close_storage(rdb)


def cost_ratios(trials: Sequence[optuna.trial.FrozenTrial]) -> dict[int, float]:
    """Each trial's training time per row at the rows rung over the baselines' (their median;
    {} when no baseline recorded one)."""
    spr = {t.number: float(v) for t in trials
           if (v := TrialMeta.read(t).rung_seconds_per_row) is not None and v > 0}
    base = [spr[t.number] for t in trials if t.number in spr and is_protected(m := TrialMeta.read(t))
            and m.final_of is None]
    if not base:
        return {}
    unit = float(np.median(base))
    return {k: v / unit for k, v in spr.items()}


def final_candidates(trials: Sequence[optuna.trial.FrozenTrial],
                     final_cost: float | None) -> set[int]:
    """Numbers of the probes a final may train: stopped at the rung (PRUNED), trained in full by
    no final yet (a final stopped from outside does not count: it is redone), and, with
    `final_cost`, at most that multiple of the baselines' time per row (`cost_ratios`; a probe
    without a measure passes). Trials stopped from outside take no part."""
    kept = [(t, TrialMeta.read(t)) for t in trials if not stopped_from_outside(t)]
    done = {m.final_of for _, m in kept if m.final_of is not None}
    ratio = cost_ratios([t for t, _ in kept]) if final_cost is not None else {}
    cap = final_cost if final_cost is not None else math.inf
    return {t.number for t, m in kept if is_probe(m) and t.state == States.PRUNED
            and t.number not in done and ratio.get(t.number, 0.0) <= cap}


def pick_finals(study: optuna.Study, store: Store, objectives: Sequence[str],
                n: int, final_cost: float | None = None) -> list[optuna.trial.FrozenTrial]:
    """The `n` best probes at the rows rung not yet trained in full: Pareto rank among every
    trial's rung point (objectives maximised), then the mean of the objectives (cost
    objectives negated). `final_cost`: only probes whose training time per row at the rung is
    at most this multiple of the baselines' (`cost_ratios`; a probe without a measure passes)."""
    rung = store.rung_values(study.study_name, ROWS_RUNG_EPOCH, objectives)
    sign = signs(objectives)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    numbers = [k for k, v in rung.items() if k in trials
               and all(o in v and math.isfinite(v[o]) for o in objectives)]
    if not numbers:
        return []
    points = np.asarray([[s * rung[k][o] for s, o in zip(sign, objectives)] for k in numbers])
    ranks = nondominated_ranks(points)
    order = sorted(range(len(numbers)), key=lambda i: (ranks[i], -points[i].mean(), numbers[i]))
    eligible = final_candidates(list(trials.values()), final_cost)
    return [trials[numbers[i]] for i in order if numbers[i] in eligible][:n]


def enqueue_finals(study: optuna.Study, probes: Sequence[optuna.trial.FrozenTrial]) -> None:
    """Enqueue each probe's parameters again, to be trained in full (same seed, from scratch)."""
    for t in probes:
        study.enqueue_trial(dict(t.params), user_attrs=TrialMeta.attrs(
            enqueued=f"final of probe #{t.number}", final_of=t.number))


__all__ = ["BudgetState", "PassMeter", "ROWS_RUNG_EPOCH", "RowsRung", "budget_state",
           "cost_ratios", "enqueue_finals", "final_candidates", "is_probe", "is_protected",
           "pick_finals", "resume_note", "spent_note", "trial_cost"]
