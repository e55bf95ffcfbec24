"""automtl from Python: `search`, `load_front`, `export`, `train`.

Thin typed wrappers over the library calls behind ``automtl search``, ``automtl pareto``,
``automtl export`` and ``automtl train``: same presets, same validation (the one strict config
loader), same storage and files, no printing. They are also reachable as ``automtl.search(...)``,
``automtl.load_front(...)``, ``automtl.export(...)`` and ``automtl.train(...)``; ``import
automtl`` stays cheap (no torch): each function imports what it needs when called.

`automtl.search`, `automtl.export` and `automtl.train` are also the names of automtl's
subpackages, which Python binds on the package as soon as one of their modules is imported; so
those subpackages are made callable (`call_through`), calling them calls the function here.

Storage: ``storage=None`` means ``$AUTOMTL_STORAGE``, else ``sqlite:///automtl.db`` (as the CLI).
Bad input raises `automtl.errors.AutomtlError` (one line naming the problem and the fix).

A whole session (all paths in a temporary folder):

>>> import os, shutil, tempfile
>>> import automtl
>>> tmp = tempfile.mkdtemp()
>>> db = "sqlite:///" + os.path.join(tmp, "automtl.db")
>>> result = automtl.search("synthetic", n_trials=2, epochs=1, storage=db, study_name="demo",
...                         data_options={"rows": 2000}, device="cpu")
>>> result.trials_run, result.objectives
(2, ['ctr_auc', 'cvr_auc'])
>>> front = automtl.load_front("demo", storage=db)
>>> len(front) >= 1 and all(0.0 <= v <= 1.0 for row in front for v in row.values.values())
True
>>> out = automtl.export("demo", "yaml", os.path.join(tmp, "best.yaml"), storage=db,
...                      pick="knee")
>>> out.chosen.trial_number in {row.trial_number for row in front}
True
>>> trained = automtl.train(os.path.join(tmp, "best.yaml"), device="cpu")
>>> abs(trained.val["ctr_auc"] - out.chosen.row.values["ctr_auc"]) < 1e-4  # reproduced
True
>>> shutil.rmtree(tmp)
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # the real imports happen inside the functions (import automtl stays light)
    from automtl.config import TrialConfig
    from automtl.export.trial import ExportResult
    from automtl.search.runner import SearchResult
    from automtl.search.front import FrontRow
    from automtl.train.loop import Callback, TrainResult

def _storage(storage: str | None) -> str:
    # imported here: automtl.search's __init__ imports this module (call_through)
    from automtl.search.defaults import DEFAULT_STORAGE, STORAGE_ENV

    return storage or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def search(dataset: str | None = None, *, study_config: str | Path | None = None,
           n_trials: int | None = None, epochs: int | None = None, space: str | None = None,
           sampler: str | None = None, pruner: str | None = None, seed: int | None = None,
           timeout: float | None = None, storage: str | None = None,
           study_name: str | None = None, device: str | None = None,
           data_dir: str | None = None, data_options: Mapping[str, Any] | None = None,
           save_checkpoints: bool = False,
           overrides: Mapping[str, Any] | None = None) -> SearchResult:
    """Run (or resume) a search, as ``automtl search``; returns its `SearchResult`.

    The study starts from the preset `dataset` (default ``synthetic``; any registered dataset
    without a preset gets a default study) or the preset file `study_config`; the keywords
    override its fields (`pruner` sets ``pruner.kind``, `data_options` are merged into the
    dataset options), `overrides` sets any other `StudyConfig` field by name (e.g.
    ``{"max_params": 100000}``). An existing `study_name` in `storage` resumes.

    >>> import os, shutil, tempfile
    >>> import automtl
    >>> tmp = tempfile.mkdtemp()
    >>> db = "sqlite:///" + os.path.join(tmp, "automtl.db")
    >>> result = automtl.search("synthetic", n_trials=2, epochs=1, storage=db,
    ...                         study_name="demo", data_options={"rows": 2000}, device="cpu")
    >>> result.study_name, result.trials_run, result.states["COMPLETE"]
    ('demo', 2, 2)
    >>> again = automtl.search("synthetic", n_trials=1, epochs=1, storage=db,
    ...                        study_name="demo", data_options={"rows": 2000}, device="cpu")
    >>> again.trials_run, again.states["COMPLETE"]  # resumed: a third trial in the same study
    (1, 3)
    >>> shutil.rmtree(tmp)
    """
    from automtl._typed import from_dict, to_dict
    from automtl.errors import AutomtlError
    from automtl.search.naming import check_study_name
    from automtl.search.runner import run_search
    from automtl.search.study_config import StudyConfig, study_for_dataset, study_preset

    if dataset and study_config:
        raise AutomtlError("automtl.search: give dataset or study_config, not both")
    if study_name is not None:
        check_study_name(study_name)
    cfg = (study_preset(str(study_config)) if study_config
           else study_for_dataset(dataset or "synthetic"))
    doc = to_dict(cfg)
    given = {"n_trials": n_trials, "epochs": epochs, "space": space, "sampler": sampler,
             "seed": seed, "timeout": timeout}
    doc.update({k: v for k, v in given.items() if v is not None})
    doc.update(overrides or {})
    if n_trials is not None and "budget" not in (overrides or {}):
        doc["budget"], doc["probes"] = None, []  # a trial count sizes the search (size_search)
    if pruner is not None:
        doc["pruner"] = {**doc["pruner"], "kind": pruner}
    if data_dir is not None:
        doc["data"]["data_dir"] = data_dir
    if data_options:
        doc["data"]["options"] = {**doc["data"]["options"], **data_options}
    # the one strict loader: unknown keys, wrong types and out-of-range values are one line
    cfg = from_dict(StudyConfig, doc, where="automtl.search()")
    return run_search(cfg, storage=_storage(storage), study_name=study_name, device=device,
                      save_checkpoints=save_checkpoints)


def load_front(study: str, *, storage: str | None = None) -> list[FrontRow]:
    """The Pareto front of `study`, as ``automtl pareto`` lists it (read-only: the database is
    not written): one `FrontRow` per trial
    (validation `values` per objective, `test` metrics, the trial's `config` and `params`); a
    study with conditioned trials gives one row per front point of their sweeps.

    >>> import os, shutil, tempfile
    >>> import automtl
    >>> tmp = tempfile.mkdtemp()
    >>> db = "sqlite:///" + os.path.join(tmp, "automtl.db")
    >>> _ = automtl.search("synthetic", n_trials=1, epochs=1, storage=db, study_name="demo",
    ...                    data_options={"rows": 2000}, device="cpu")
    >>> (row,) = automtl.load_front("demo", storage=db)
    >>> row.trial_number, sorted(row.values), row.config["model"]["arch"] == row.attrs["arch"]
    (0, ['ctr_auc', 'cvr_auc'], True)
    >>> shutil.rmtree(tmp)
    """
    from automtl.search.dbopen import open_study_readonly
    from automtl.search.storage import objective_names
    from automtl.search.store import Store, compute_front, read_or

    url = _storage(storage)
    st = open_study_readonly(url, study)  # read-only, one clear error when missing
    store = Store.readonly(url)
    try:
        front = read_or(lambda: store.front(study), [])
        if not front:  # a study automtl's tables do not know (plain Optuna, older automtl)
            front = compute_front(st, objective_names(st))
        if read_or(lambda: store.sweeps(study), {}):
            front = store.point_front(st)
    finally:
        store.dispose()
    return front


def export(study: str, format: str, out: str | Path, *, storage: str | None = None,
           trial: int | None = None, pick: str | None = None,
           weights: Mapping[str, float] | None = None,
           minimum: Mapping[str, float] | None = None, maximize: str | None = None,
           data_dir: str | None = None, write_data: str | Path | None = None,
           retrain: bool = False, device: str | None = None) -> ExportResult:
    """Write one trial of `study` as `format` (yaml, json, fuxictr, torch-rechub, onnx,
    torchscript) to `out`, as ``automtl export``; returns the `ExportResult` (chosen trial,
    written paths, terms the target cannot express in `dropped`).

    Choose the trial by exactly one rule: `trial`, ``pick="knee"``, `weights` (``{"ctr": 0.7,
    "cvr": 0.3}``: best weighted sum of validation AUCs) or `minimum` bounds with `maximize`.

    >>> import os, shutil, tempfile
    >>> import automtl
    >>> tmp = tempfile.mkdtemp()
    >>> db = "sqlite:///" + os.path.join(tmp, "automtl.db")
    >>> _ = automtl.search("synthetic", n_trials=1, epochs=1, storage=db, study_name="demo",
    ...                    data_options={"rows": 2000}, device="cpu")
    >>> res = automtl.export("demo", "yaml", os.path.join(tmp, "best.yaml"), storage=db,
    ...                      weights={"ctr": 1.0})
    >>> res.chosen.trial_number, res.chosen.rule, [p.name for p in res.paths]
    (0, 'max 1*ctr', ['best.yaml'])
    >>> shutil.rmtree(tmp)
    """
    from automtl.errors import AutomtlError
    from automtl.export.trial import export_trial
    from automtl.search.selection import parse_selection

    def pairs(d: Mapping[str, float] | None) -> list[str] | None:
        return [",".join(f"{k}={v!r}" for k, v in d.items())] if d else None

    rule = parse_selection(trial=trial, pick=pick, weights=pairs(weights),
                           minimums=pairs(minimum), maximize=maximize)
    if rule is None:
        raise AutomtlError("automtl.export: choose a trial: trial=N, pick='knee', "
                           "weights={'ctr': 0.7, 'cvr': 0.3}, or minimum={'ctr': 0.72} with "
                           "maximize='cvr'")
    return export_trial(_storage(storage), study, rule, format, out, data_dir=data_dir,
                        write_data=write_data, retrain=retrain, device=device)


def train(config: TrialConfig | Mapping[str, Any] | str | Path, *, device: str | None = None,
          data_dir: str | None = None, out: str | Path | None = None,
          callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train one configuration, as ``automtl train``; returns the `TrainResult` (per-task
    validation/test metrics at the best epoch in `val`/`test`, the model with its best weights).

    `config` is a `TrialConfig`, its plain-dict form, or a YAML/JSON file (e.g. one written by
    `export`); `out` saves ``model.pt`` and ``config.yaml`` there.

    >>> import os, shutil, tempfile
    >>> import automtl
    >>> tmp = tempfile.mkdtemp()
    >>> result = automtl.train({"data": {"name": "synthetic", "options": {"rows": 2000}},
    ...                         "model": {"arch": "mmoe", "n_experts": 2, "embedding_dim": 4,
    ...                                   "expert_dims": [16], "tower_dims": [8]},
    ...                         "train": {"epochs": 1, "batch_size": 512}},
    ...                        device="cpu", out=os.path.join(tmp, "run"))
    >>> result.epochs_run, 0.0 <= result.val["ctr_auc"] <= 1.0
    (1, True)
    >>> sorted(os.listdir(os.path.join(tmp, "run")))
    ['config.yaml', 'model.pt']
    >>> shutil.rmtree(tmp)
    """
    from automtl._typed import from_dict, to_dict
    from automtl.config import TrialConfig, load_trial_config
    from automtl.data import check_data_config, get_info, load_dataset
    from automtl.errors import config_file
    from automtl.train import fit, save_trained

    if isinstance(config, TrialConfig):
        cfg = from_dict(TrialConfig, to_dict(config), where="automtl.train()")  # checked copy
    elif isinstance(config, Mapping):
        cfg = from_dict(TrialConfig, dict(config), where="automtl.train()")
    else:
        cfg = load_trial_config(config)
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if device is not None:
        cfg.train.device = device
    where = "automtl.train()" if isinstance(config, (TrialConfig, Mapping)) else str(config)
    check_data_config(cfg.data, where)
    with config_file(where, unless=("train.device",) if device is not None else (),
                     data_too=not get_info(cfg.data.name).needs_files):
        result = fit(cfg, load_dataset(cfg.data), callbacks=callbacks)
    if out is not None:
        save_trained(out, cfg, result.model)
    return result


def call_through(module_name: str, function: str) -> None:
    """Make the imported module `module_name` callable: calling it calls `automtl.api.<function>`
    (so ``automtl.search(...)`` works although ``automtl.search`` is also a subpackage)."""
    module = sys.modules[module_name]
    target = globals()[function]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return target(*args, **kwargs)

    sig = inspect.signature(target)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    call = _CallableModule.__call__
    call.__doc__ = target.__doc__  # help(automtl.search) shows the function's documentation
    call.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *sig.parameters.values()])
    module.__class__ = _CallableModule


__all__ = ["call_through", "export", "load_front", "search", "train"]
