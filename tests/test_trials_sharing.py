"""K trials on one device sharing ONE copy of the data (`--trials-per-device`): the data owner
hands its resident splits to the trial processes; on CPU the same code path shares memory
instead of CUDA IPC handles. Trials trained that way equal trials trained one after another."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from automtl._typed import from_dict
from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data import generate_synthetic, load_dataset
from automtl.data.columnar import save_dataset
from automtl.search.study_config import study_preset
from automtl.search.distributed import prepare_shared_study, run_worker_group
from automtl.search.meta import TrialMeta
from automtl.train import device_split, fit
from automtl.train.sharing import run_sharing_data

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("one_thread")]


@pytest.fixture(autouse=True)
def _one_thread_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bit-equality needs one reduction order on both sides: one intra-op thread here (the
    `one_thread` fixture) AND in the spawned trial processes, which read OMP_NUM_THREADS when
    torch starts. A module that left this process on one thread made logloss differ by 1e-10."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

DATA = DataConfig(options={"rows": 3000, "seed": 2})


def _cfg(arch: str) -> TrialConfig:
    model = ModelConfig(arch=arch, embedding_dim=4, bottom_dims=[8], tower_dims=[4], n_experts=2,
                        expert_dims=[8])
    return TrialConfig(data=DATA, model=model,
                       train=TrainConfig(epochs=1, batch_size=512, device="cpu"))


def fit_job(cfg: TrialConfig) -> tuple[dict[str, float], bool]:
    """Runs in a trial process: the metrics, and whether its train split is the shared copy."""
    ds = load_dataset(cfg.data)
    result = fit(cfg, ds)
    return result.val, device_split(ds, "train", torch.device("cpu")).labels.is_shared()


def test_two_trials_sharing_one_data_copy_equal_two_sequential_trials() -> None:
    cfgs = [_cfg("mmoe"), _cfg("shared_bottom")]
    shared = run_sharing_data(DATA, "cpu", [(fit_job, (c,)) for c in cfgs])
    assert all(is_shared for _, is_shared in shared)  # each trained on the owner's copy
    sequential = [fit(c, load_dataset(DATA)).val for c in cfgs]
    assert [val for val, _ in shared] == sequential


def _mapping_of(address: int) -> str:
    """The file (or shared-memory object) this process maps at `address` (/proc/self/maps)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= address < hi:
            return rest[4].strip() if len(rest) > 4 else ""
    return ""


def mapped_job(cfg: TrialConfig) -> tuple[dict[str, float], str, bool]:
    """Runs in a trial process: the metrics, where its train labels live, whether shared."""
    ds = load_dataset(cfg.data)
    result = fit(cfg, ds)
    labels = device_split(ds, "train", torch.device("cpu")).labels
    return result.val, _mapping_of(labels.data_ptr()), labels.is_shared()


def test_trials_on_a_memory_mapped_cache_map_its_files_instead_of_copying(tmp_path: Path) -> None:
    folder = save_dataset(generate_synthetic(rows=3000, seed=2), tmp_path / "cols")
    data = DataConfig(name="ali-ccp", data_dir=str(folder))  # a prepared (columnar) folder
    cfgs = [dataclasses.replace(_cfg(a), data=data) for a in ("mmoe", "shared_bottom")]
    shared = run_sharing_data(data, "cpu", [(mapped_job, (c,)) for c in cfgs])
    for _, where, is_shared in shared:  # the cache file itself, not a shared-memory copy of it
        assert where == str(folder / "train" / "labels.bin") and not is_shared
    sequential = [fit(c, load_dataset(data)).val for c in cfgs]
    assert [val for val, _, _ in shared] == sequential


def test_worker_group_runs_the_study_trials_on_one_shared_copy(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nparams:\n  model.arch: {choices: [shared_bottom, mmoe]}\n"
        "  model.embedding_dim: 4\n  model.bottom_dims: {choices: [[8]]}\n"
        "  model.expert_dims: {choices: [[8]]}\n  model.n_experts: 2\n"
        "  model.tower_dims: {choices: [[4]]}\n")
    (tmp_path / "s.yaml").write_text(
        "name: grp\ndata: {name: synthetic, options: {rows: 3000, seed: 2}}\n"
        "objectives: [ctr_auc, cvr_auc]\nspace: tiny.yaml\nepochs: 1\nn_trials: 2\n"
        "sampler: random\npruner: {kind: none}\ntrain: {batch_size: 512, device: cpu}\n")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    prepare_shared_study(study_preset(str(tmp_path / "s.yaml")), url)
    results = run_worker_group(url, "grp", device="cpu", trials_per_device=2, allow_cpu=True)
    assert len(results) == 2 and sum(len(r.trials) for r in results) == 2
    trials = optuna.load_study(study_name="grp", storage=url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    names = {str(TrialMeta.read(t).worker) for t in trials}
    assert all(n.rsplit(".", 1)[-1] in ("0", "1") for n in names)
    for t in trials:  # each equals its configuration trained alone in this process
        meta = TrialMeta.read(t)
        cfg = from_dict(TrialConfig, meta.config)
        alone = fit(cfg, load_dataset(cfg.data))
        assert meta.val_metrics == pytest.approx(alone.val, rel=0, abs=0)
