"""Rich progress views: training (`automtl train`, `export` retraining), the in-process search
(`automtl search`) and local worker processes (`automtl search --workers`).

They subclass the library's listener classes (`fit` callbacks, `SearchListener`, `WorkersView`),
so this module imports the training loop (and torch): commands import it inside their bodies,
never at the top of a CLI module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from automtl.cli.pareto import fmt, human_count
from automtl.config import TrialConfig
from automtl.search.distributed import Budget, WorkerProcess, WorkersView
from automtl.search.front import FrontRow
from automtl.search.meta import StudyMeta, TrialMeta, arch_label
from automtl.search.runner import SearchListener
from automtl.train.loop import Callback, EpochRecord


class EpochProgress(Callback):
    """Rich progress bar per epoch (over its batches) plus one summary line per epoch."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: object | None = None

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(f"epoch {epoch}", total=n_steps)
        self.progress.update(self.task, completed=step)  # type: ignore[arg-type]

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)  # type: ignore[arg-type]
            self.task = None
        self.progress.console.print(
            f"epoch {epoch}: train loss {record.train_loss:.4f}, val mean AUC "
            f"{record.val.get('mean_auc', float('nan')):.4f}, {record.samples_per_s:,.0f} samples/s "
            f"({record.seconds:.1f} s)"
        )


def epoch_columns(prefix: str = "") -> list:
    """The columns of a training progress bar."""
    return [TextColumn(prefix + "{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn()]


class LazyEpochProgress(Callback):
    """Training progress that appears only when a model is actually retrained."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.inner: EpochProgress | None = None

    def on_batch_end(self, epoch: int, step: int, n_steps: int) -> None:
        if self.inner is None:
            self.progress = Progress(*epoch_columns("retraining, "), console=self.console,
                                     transient=True)
            self.progress.start()
            self.inner = EpochProgress(self.progress)
        self.inner.on_batch_end(epoch, step, n_steps)

    def on_epoch_end(self, epoch: int, record: EpochRecord) -> None:
        if self.inner is not None:
            self.inner.on_epoch_end(epoch, record)

    def close(self) -> None:
        """Stop the bar if it was shown."""
        if self.progress is not None:
            self.progress.stop()


class RichSearchListener(SearchListener):
    """Rich progress: trial i/N with elapsed/ETA, epoch, current per-task AUCs, front size; one
    line per finished trial (values, n_params, samples/s, or the prune/fail reason)."""

    def __init__(self, progress: Progress, objectives: list[str], storage: str) -> None:
        self.progress, self.storage = progress, storage
        self.objectives = objectives
        self.task: Any = None
        self.front_size = 0
        self.arch = ""
        self.number = -1
        self.epoch_text = ""
        self.auc_text = ""

    def _refresh(self) -> None:
        parts = [f"trial #{self.number} {self.arch}", self.epoch_text, self.auc_text,
                 f"front {self.front_size}"]
        desc = " · ".join(p for p in parts if p)
        self.progress.update(self.task, description=desc)

    def on_search_start(self, study: optuna.Study, n_trials: int | None, n_existing: int) -> None:
        from automtl.search.store import Store

        meta = StudyMeta.read(study)
        self.objectives = list(meta.objectives or self.objectives)
        if n_existing:
            self.progress.console.print(f"resuming study {study.study_name!r}: {n_existing} "
                                        "trials already stored", highlight=False)
        self.front_size = len(Store(self.storage).front(study.study_name)) if n_existing else 0
        waiting = [str(TrialMeta.read(t).enqueued) for t in study.get_trials(deepcopy=False)
                   if t.state.name == "WAITING" and TrialMeta.read(t).enqueued]
        if waiting:
            self.progress.console.print(f"enqueued first: {', '.join(waiting)}", highlight=False,
                                        soft_wrap=True)
        for note in meta.baselines_skipped if not n_existing else []:
            self.progress.console.print(f"baseline skipped: {note}", highlight=False,
                                        soft_wrap=True)
        self.task = self.progress.add_task("starting", total=n_trials)

    def on_trial_start(self, number: int, index: int, config: TrialConfig) -> None:
        m = config.model
        self.number, self.arch = number, arch_label(m.arch, m.bottom, m.head)
        self.epoch_text, self.auc_text = f"epoch 1/{config.train.epochs}", ""
        self._refresh()

    def on_batch(self, number: int, epoch: int, step: int, n_steps: int) -> None:
        text = f"epoch {epoch} {100 * step // max(n_steps, 1)}%"
        if text != self.epoch_text:
            self.epoch_text = text
            self._refresh()

    def on_epoch(self, number: int, epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        self.epoch_text = f"epoch {epoch}/{epochs}"
        self.auc_text = " ".join(f"{o.removesuffix('_auc')} {fmt(metrics.get(o))}"
                                 for o in self.objectives)
        self._refresh()

    def on_trial_end(self, trial: FrozenTrial, front: list[FrontRow]) -> None:
        self.front_size = len(front)
        a = TrialMeta.read(trial)
        state = trial.state.name
        head = f"#{trial.number} {state.lower():8s} {a.label():13s}"
        if state == "COMPLETE":
            vals = " ".join(f"{o}={fmt(v)}" for o, v in zip(self.objectives, trial.values or []))
            on_front = " [green]front[/]" if any(r.trial_number == trial.number for r in front) \
                else ""
            epochs = a.epochs_run if a.epochs_run is not None else "?"
            detail = (f"{vals} · {human_count(a.n_params)} params · "
                      f"{human_count(a.samples_per_s)} samples/s · "
                      f"{epochs} ep · {a.seconds or 0:.1f} s{on_front}")
        elif state == "PRUNED":
            detail = f"[yellow]{a.prune_reason or 'pruned'}[/]"
        else:
            detail = f"[red]{a.fail_reason or 'failed'}[/]"
        self.progress.console.print(f"{head} {detail}", highlight=False, soft_wrap=True)
        self.progress.advance(self.task)
        self.epoch_text, self.auc_text = "", ""
        self._refresh()


class RichWorkersView(WorkersView):
    """One line per finished trial, and (on a terminal) a live table of the workers."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live: Live | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RichWorkersView:
        if self.console.is_terminal:
            self.live = self._stack.enter_context(
                Live(console=self.console, auto_refresh=False, transient=True))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self.live = None

    def wants_epochs(self) -> bool:
        return self.live is not None

    def trial_finished(self, trial: FrozenTrial, objectives: Sequence[str]) -> None:
        meta = TrialMeta.read(trial)
        who = meta.worker or "?"
        line = f"trial {trial.number} {trial.state.name} ({who})"
        if trial.values:
            line += " " + " ".join(f"{n}={v:.4f}" for n, v in zip(objectives, trial.values))
        if trial.state == TrialState.FAIL:
            reason = meta.fail_reason
            line += "; its worker died, retried" if reason is None else f": {reason}"
        self.console.print(line, highlight=False)

    def update(self, study: optuna.Study, procs: Sequence[WorkerProcess], budget: Budget,
               epochs: dict[int, int], elapsed: float) -> None:
        if self.live is not None:
            self.live.update(self._table(study, procs, budget, epochs, elapsed), refresh=True)

    def worker_failed(self, proc: WorkerProcess, returncode: int, log_tail: list[str]) -> None:
        self.console.print(f"worker {proc.index} (pid {proc.process.pid}) exited with code "
                           f"{returncode}; log {proc.log}: " + " | ".join(log_tail),
                           highlight=False)

    @staticmethod
    def _table(study: optuna.Study, procs: Sequence[WorkerProcess], b: Budget,
               epochs: dict[int, int], elapsed: float) -> Table:
        done = b.finished
        eta = ""
        if b.target and done:
            eta = f", ETA {max(0.0, elapsed / done * (b.target - done)):.0f} s"
        target = b.target if b.target is not None else "∞"
        title = (f"study {study.study_name}: {done}/{target} trials finished "
                 f"({b.states.get('COMPLETE', 0)} complete, {b.states.get('PRUNED', 0)} pruned, "
                 f"{b.states.get('FAIL', 0)} failed, {b.retried} retried), "
                 f"{elapsed:.0f} s{eta}")
        table = Table(title=title, title_justify="left")
        for col in ("worker", "pid", "device", "status"):
            table.add_column(col)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for p in procs:
            rc = p.process.poll()
            # a device group's trial processes are "host:pid.i" after their worker's "host:pid"
            mine = [t for t in running
                    if (w := str(TrialMeta.read(t).worker or "")) == p.name
                    or (w.startswith(p.name + ".") and w[len(p.name) + 1:].isdigit())]
            if rc is not None:
                status = "finished" if rc == 0 else f"exited with code {rc}"
            elif mine:
                status = ", ".join(f"trial {t.number}, epoch {epochs.get(t.number, 0) + 1} "
                                   "running" for t in mine)
            else:
                status = "starting / waiting"
            table.add_row(str(p.index), str(p.process.pid), p.device or "auto", status)
        return table
