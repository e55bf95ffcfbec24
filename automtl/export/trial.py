"""`export_trial`: choose a trial of a stored study and write it in one of the export formats.

The library function behind `automtl export`. Formats:

- ``yaml`` / ``json``: the trial's `TrialConfig`, the input of `automtl train --config`;
- ``fuxictr``: ``model_config.yaml`` + ``dataset_config.yaml`` in the output folder;
- ``torch-rechub``: a runnable training script (optionally with the data as processed CSVs);
- ``onnx`` / ``torchscript``: the trained model, from the trial's checkpoint when the search saved
  one (``--save-checkpoints``), else retrained from its config first.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import optuna
import torch
from torch import nn

from automtl._typed import from_dict, to_dict
from automtl.config import TrialConfig
from automtl.data.schema import Dataset
from automtl.errors import AutomtlError
from automtl.search.dbopen import open_study_readonly
from automtl.search.front import FrontRow, row_from_trial
from automtl.search.selection import Direction, Selection, select
from automtl.search.storage import objective_names
from automtl.search.store import Store, compute_front, read_or
from automtl.train.loop import Callback
from automtl.yamlio import dump_yaml

FORMATS = ("yaml", "json", "fuxictr", "torch-rechub", "onnx", "torchscript")


@dataclass
class ChosenTrial:
    """A trial picked from a study, with what the export needs."""

    study_name: str
    row: FrontRow
    objectives: list[str]
    rule: str  # the selection rule in words

    @property
    def trial_number(self) -> int:
        return self.row.trial_number

    def config(self) -> TrialConfig:
        """The trial's `TrialConfig` (validated)."""
        if not self.row.config:
            raise AutomtlError(f"trial {self.trial_number} of study {self.study_name!r} has no "
                               "stored config (user attr 'config'); it was not run by automtl")
        return from_dict(TrialConfig, self.row.config,
                         where=f"study {self.study_name} trial {self.trial_number} config")

    def header(self) -> str:
        """One-paragraph provenance text for exported files."""
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self.row.values.items())
        if self.row.weights is not None:
            vec = ", ".join(f"{k}={v:.4g}" for k, v in self.row.weights.items())
            vals = (vals or "not a sweep point, not stored (automtl train --config evaluates "
                    "it)") + f"\nserved at task weights: {vec} (loss.weighting.preference)"
        return (f"automtl export: study {self.study_name!r}, trial {self.trial_number} "
                f"(chosen by {self.rule})\nvalidation: {vals}")


@dataclass
class ExportResult:
    """What `export_trial` wrote and how."""

    chosen: ChosenTrial
    format: str
    paths: list[Path]
    dropped: list[str] = field(default_factory=list)  # terms the target format cannot express
    notes: list[str] = field(default_factory=list)  # behavioural differences and fallbacks
    model_source: str | None = None  # onnx/torchscript: "checkpoint" or "retrained"
    retrain_val: dict[str, float] | None = None  # validation metrics of a retraining


def _directions(study: optuna.Study, objectives: Sequence[str]) -> dict[str, Direction]:
    return {o: ("minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize")
            for o, d in zip(objectives, study.directions)}


def choose_trial(storage_url: str, study_name: str, selection: Selection) -> ChosenTrial:
    """Open the study and pick a trial by `selection` (front rules; `--trial` any completed one)."""
    study = open_study_readonly(storage_url, study_name)  # exporting never writes
    objectives = objective_names(study)
    store = Store.readonly(storage_url)
    if selection.within is not None:  # a point inside a conditioned trial
        from automtl.search.points import choose_within

        try:
            row = choose_within(study, store, selection, _directions(study, objectives))
        finally:
            store.dispose()
        return ChosenTrial(study_name, row, objectives, selection.describe())
    try:
        rows = read_or(lambda: store.front(study_name), [])
        if not rows:  # e.g. a study whose front was never stored: compute it in memory
            rows = compute_front(study, objectives)
        if selection.trial is None and read_or(lambda: store.sweeps(study_name), {}):
            # conditioned trials: the rules choose among points (a point's row carries its
            # task-weight vector as loss.weighting.preference)
            rows = store.point_front(study)
    finally:
        store.dispose()
    if selection.trial is not None and all(r.trial_number != selection.trial for r in rows):
        # --trial may name any completed trial, on the front or not
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        t = trials.get(selection.trial)
        if t is not None and t.state != optuna.trial.TrialState.COMPLETE:
            raise AutomtlError(f"--trial {selection.trial}: the trial is {t.state.name}, only "
                               "completed trials can be exported")
        if t is not None:
            rows = [*rows, row_from_trial(t, objectives)]
    row = select(rows, objectives, selection, _directions(study, objectives))
    return ChosenTrial(study_name, row, objectives, selection.describe())


def _check_writable(path: Path, option: str, folder: bool) -> None:
    """Refuse, before anything is written, an output path that cannot become what it must be:
    a file where a folder goes (or a folder where a file goes), or a file among its parents."""
    if path.exists() and path.is_dir() != folder:
        what = "a folder" if path.is_dir() else "a file"
        raise AutomtlError(f"{option} {path}: is {what}; give a "
                           f"{'folder' if folder else 'file'} path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise AutomtlError(f"{option} {path}: {parent} is a file, not a folder; choose "
                                   "another path")
            break


def _write_text(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AutomtlError(f"{path}: cannot write ({exc.strerror}); choose another -o path") \
            from None
    return path


def config_text(cfg: TrialConfig, fmt: str, header: str = "") -> str:
    """The `TrialConfig` as YAML (with a comment header) or JSON."""
    if fmt == "json":
        return json.dumps(to_dict(cfg), indent=2) + "\n"
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + dump_yaml(cfg)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a saved ``state_dict`` into `model` (``torch.load(weights_only=True)``, on CPU)."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AutomtlError(f"{p}: cannot load the checkpoint ({first}); export with --retrain "
                           "to train the config again") from None
    return model


def trained_model(chosen: ChosenTrial, cfg: TrialConfig, dataset: Dataset, *,
                  retrain: bool = False, device: str | None = None,
                  callbacks: Sequence[Callback] = ()) -> tuple[nn.Module, str, list[str],
                                                          dict[str, float] | None]:
    """(model on CPU in eval mode, "checkpoint" | "retrained", notes, retrain val metrics)."""
    from automtl.models import build_model
    from automtl.train import fit

    notes: list[str] = []
    ckpt = chosen.row.meta.checkpoint
    if ckpt and not retrain:
        if Path(ckpt).is_file():
            model = build_model(cfg.model, dataset.features, dataset.tasks, cfg.loss.weighting)
            return load_weights(model, ckpt).eval(), "checkpoint", notes, None
        notes.append(f"checkpoint {ckpt} is missing; retrained the config instead")
    elif not ckpt and not retrain:
        notes.append("the search saved no checkpoint (--save-checkpoints); retrained the config")
    result = fit(cfg, dataset, callbacks=callbacks, device=device)
    return result.model.cpu().eval(), "retrained", notes, dict(result.val)


def export_trial(storage_url: str, study_name: str, selection: Selection, fmt: str,
                 out: str | Path, *, data_dir: str | None = None,
                 write_data: str | Path | None = None,
                 retrain: bool = False, device: str | None = None,
                 callbacks: Sequence[Callback] = (), weights_input: bool = False) -> ExportResult:
    """Choose a trial of `study_name` by `selection` and write it as `fmt` to `out`.

    `data_dir` overrides the config's data folder; `write_data` (fuxictr, torch-rechub) also
    writes the dataset's splits there as processed CSVs; `retrain` ignores a saved checkpoint;
    `callbacks` go to `automtl.train.fit` when a model is retrained (progress bars);
    `weights_input` (onnx/torchscript of a preference-conditioned trial) exposes the task-weight
    vector as an input instead of baking the chosen one in.
    """
    if fmt not in FORMATS:
        raise AutomtlError(f"--format {fmt}: unknown format; use one of {', '.join(FORMATS)}")
    _check_writable(Path(out), "-o", folder=fmt == "fuxictr")
    if write_data is not None:
        _check_writable(Path(write_data), "--write-data", folder=True)
    if weights_input and fmt not in ("onnx", "torchscript"):
        raise AutomtlError(f"--weights-input: only for --format onnx or torchscript, not {fmt}")
    chosen = choose_trial(storage_url, study_name, selection)
    cfg = chosen.config()
    if weights_input and cfg.loss.weighting.scheme != "conditioned":
        raise AutomtlError(f"--weights-input: trial {chosen.trial_number} is not "
                           "preference-conditioned (loss.weighting.scheme: conditioned); "
                           "drop --weights-input")
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    out = Path(out)
    header = chosen.header()
    if fmt in ("yaml", "json"):
        return ExportResult(chosen, fmt, [_write_text(out, config_text(cfg, fmt, header))])

    from automtl.data import load_dataset

    dataset = load_dataset(cfg.data)
    data_paths: list[Path] = []
    if fmt == "fuxictr":
        from automtl.export.fuxictr import fuxictr_config, write_fuxictr

        root = str(Path(write_data).parent) if write_data is not None else "./data/"
        dataset_id = Path(write_data).name if write_data is not None else None
        fx = fuxictr_config(cfg, dataset.features, dataset.tasks, dataset_id=dataset_id,
                            data_root=root)
        paths = write_fuxictr(fx, out, header)
        data_paths = _write_data(dataset, write_data)
        return ExportResult(chosen, fmt, paths + data_paths, dropped=fx.dropped)
    if fmt == "torch-rechub":
        from automtl.export.rechub import rechub_script, write_rechub

        rh = rechub_script(cfg, dataset.features, dataset.tasks, header)
        paths = [write_rechub(rh, out)]
        data_paths = _write_data(dataset, write_data)
        return ExportResult(chosen, fmt, paths + data_paths, dropped=rh.dropped, notes=rh.notes)

    from automtl.export.serving import example_inputs, export_onnx, export_torchscript

    if fmt == "onnx" and importlib.util.find_spec("onnx") is None:
        raise AutomtlError("--format onnx needs the onnx package: pip install 'automtl[export]'")
    model, source, notes, val = trained_model(chosen, cfg, dataset, retrain=retrain,
                                              device=device, callbacks=callbacks)
    split = dataset.splits.get("val") or dataset.splits["train"]
    example = example_inputs(split, dataset.features, rows=min(64, len(split)))
    meta: dict[str, Any] = {"study": chosen.study_name, "trial": chosen.trial_number,
                            "model_source": source, "config": to_dict(cfg)}
    if chosen.row.weights is not None or cfg.loss.weighting.scheme == "conditioned":
        meta["task_weights"] = "input" if weights_input else (
            chosen.row.weights or cfg.loss.weighting.preference or "uniform")
    if weights_input:
        rows = example[0].shape[0]
        example = (*example, torch.full((rows, len(dataset.tasks)), 1.0 / len(dataset.tasks)))
    writer = export_onnx if fmt == "onnx" else export_torchscript
    path = writer(model, dataset.features, dataset.tasks, example, out, meta,
                  weights_input=weights_input)
    return ExportResult(chosen, fmt, [path], notes=notes, model_source=source, retrain_val=val)


def _write_data(dataset: Dataset, folder: str | Path | None) -> list[Path]:
    if folder is None:
        return []
    from automtl.export.tables import write_processed_csv

    return write_processed_csv(dataset, folder)


__all__ = ["ChosenTrial", "ExportResult", "FORMATS", "choose_trial", "config_text",
           "export_trial", "load_weights", "trained_model"]
