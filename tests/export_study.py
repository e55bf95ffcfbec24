"""A real `automtl search` study for the export tests, made once per test session.

Tiny synthetic data (4000 rows), a tiny space (shared bottom or MMoE, 4-d embeddings, 16-unit
layers), 2 trials x 2 epochs on CPU, with `--save-checkpoints`. Shared by the export test files
through the session fixture `searched_study` (conftest.py): the search runs once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna

from automtl.cli import main
from automtl.config import DataConfig, TrialConfig, to_dict
from automtl.search.store import Store

SMALL_DATA = DataConfig(options={"rows": 2000})

SPACE = """\
name: export-tiny
description: tiny space for the export tests
params:
  model.arch:
    choices:
      shared_bottom: {}
      mmoe: {}
  model.head: plain
  model.embedding_dim: 4
  model.bottom_dims: [16]
  model.expert_dims: [16]
  model.tower_dims: [8]
  model.n_experts: 2
  train.lr: {float: [1.0e-3, 1.0e-2], log: true}
  train.batch_size: 512
"""


@dataclass(frozen=True)
class SearchedStudy:
    """Where the study lives and its completed trials."""

    folder: Path
    url: str
    name: str

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=self.name, storage=self.url)

    def complete(self) -> list[optuna.trial.FrozenTrial]:
        return [t for t in self.study().get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE]


def run_searched_study(folder: Path) -> SearchedStudy:
    """Run the search into `folder` and return the study (the session fixture
    `searched_study` of conftest.py calls this once)."""
    (folder / "space.yaml").write_text(SPACE, encoding="utf-8")
    url = f"sqlite:///{folder / 'study.db'}"
    rc = main(["search", "--dataset", "synthetic", "--space", str(folder / "space.yaml"),
               "--n-trials", "2", "--epochs", "2", "--data-option", "rows=4000",
               "--storage", url, "--study-name", "exp", "--device", "cpu", "--no-report",
               "--save-checkpoints", "--pruner", "none", "--seed", "1"])
    assert rc == 0, "automtl search failed"
    return SearchedStudy(folder, url, "exp")


def constructed_study(db: Path, trials: list[tuple[tuple[float, float], TrialConfig]],
                      name: str = "made") -> str:
    """A study stored the way `automtl search` stores one, with given values and configs (no
    training); returns its storage URL. Objectives: ctr_auc, cvr_auc."""
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize"] * 2)
    study.set_user_attr("objectives", ["ctr_auc", "cvr_auc"])
    for values, cfg in trials:
        study.add_trial(optuna.trial.create_trial(
            values=list(values), params={}, distributions={},
            user_attrs={"config": to_dict(cfg), "arch": cfg.model.arch, "bottom": cfg.model.bottom,
                        "val_metrics": dict(zip(["ctr_auc", "cvr_auc"], values))}))
    store = Store(url)
    store.refresh_front(study)
    store.dispose()
    return url
