"""Rich progress views for training (`automtl train`, `automtl export` retraining).

These are `fit` callbacks, so this module imports the training loop (and torch): commands import
it inside their bodies, never at the top of a CLI module.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
