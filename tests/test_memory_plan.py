"""The device-memory plan (which split is resident, which streamed; the one line when nothing
fits) on constructed sizes, and streamed batches equal to resident ones row for row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data import DeviceSplit, StreamedSplit, iter_batches, load_dataset
from automtl.errors import ConfigError, DataError
from automtl.train import clear_device_cache, fit
from automtl.train.memory import (
    RESERVE_MIN,
    STAGING_BATCHES,
    estimate_model_bytes,
    parse_bytes,
    plan_memory,
    plan_run,
    resolve_data_on,
    row_bytes,
    split_nbytes,
)

G = 1 << 30
SIZES = {"train": 10 * G, "val": 2 * G, "test": 2 * G}


def test_everything_fits_stays_resident() -> None:
    plan = plan_memory(SIZES, model_bytes=G, device_budget=80 * G, device="cuda:0")
    assert plan.placement == {"train": "device", "val": "device", "test": "device"}
    assert plan.streamed == []
    assert "train device (10.00 GiB)" in plan.line() and "all fit" in plan.line()


def test_plan_line_names_the_model_estimate_only_when_there_is_a_model() -> None:
    with_model = plan_memory(SIZES, model_bytes=G, device_budget=80 * G, device="cuda:0")
    data_only = plan_memory(SIZES, model_bytes=0, device_budget=80 * G, device="cuda:0")
    assert "model estimate 1.00 GiB, device budget 80.00 GiB" in with_model.line()
    assert "model estimate" not in data_only.line()
    assert data_only.line().startswith("data plan on cuda:0: train device")


def test_train_resident_val_and_test_streamed_when_only_train_fits() -> None:
    # 16 GiB - 8% reserve (1.28) - model 2 = 12.72 left: train (10) fits, val (2) fits, test not
    plan = plan_memory(SIZES, model_bytes=2 * G, device_budget=16 * G, device="cuda:0")
    assert plan.placement == {"train": "device", "val": "device", "test": "host"}
    assert plan.streamed == ["test"]
    assert "test host" in plan.line() and "does not fit" in plan.line()


def test_does_not_fit_streams_every_split_that_is_too_large() -> None:
    plan = plan_memory(SIZES, model_bytes=G, device_budget=4 * G, device="cuda:0")
    assert plan.placement == {"train": "host", "val": "device", "test": "host"}


def test_fits_only_on_host_file_backed_needs_no_host_memory() -> None:
    plan = plan_memory(SIZES, model_bytes=G, device_budget=2 * G, device="cuda:0",
                       host_budget=1 * G, file_backed={"train": True, "val": True, "test": True})
    assert set(plan.placement.values()) == {"host"}
    # in memory, the host must hold the streamed splits: 14 GiB fit in 20
    plan = plan_memory(SIZES, model_bytes=G, device_budget=2 * G, host_budget=20 * G)
    assert set(plan.placement.values()) == {"host"}


def test_fits_nowhere_is_one_line_with_the_numbers() -> None:
    with pytest.raises(DataError) as err:
        plan_memory(SIZES, model_bytes=G, device_budget=4 * G, device="cuda:0",
                    host_budget=8 * G)
    text = str(err.value)
    assert "\n" not in text and "fits nowhere" in text
    assert "train 10.00 GiB" in text and "8.00 GiB available" in text and "cuda:0" in text
    with pytest.raises(DataError, match="the model alone needs about 10.00 GiB"):
        plan_memory(SIZES, model_bytes=10 * G, device_budget=8 * G, device="cuda:0")


def test_overrides_force_the_placement() -> None:
    host = plan_memory(SIZES, model_bytes=G, device_budget=80 * G, data_on="host")
    assert set(host.placement.values()) == {"host"} and "--data-on host" in host.line()
    dev = plan_memory(SIZES, model_bytes=G, device_budget=8 * G, data_on="device")
    assert set(dev.placement.values()) == {"device"} and "may run out of memory" in dev.line()
    unlimited = plan_memory(SIZES, model_bytes=G, device_budget=None, device="cpu")
    assert set(unlimited.placement.values()) == {"device"} and "unlimited" in unlimited.line()
    assert plan_memory({"train": 1}, 0, RESERVE_MIN + 1).placement == {"train": "device"}


def test_sizes_and_overrides_are_validated(monkeypatch) -> None:
    assert parse_bytes("24G", "x") == 24 * G and parse_bytes("512MiB", "x") == 512 << 20
    assert parse_bytes("1000", "x") == 1000
    with pytest.raises(ConfigError, match="not a size"):
        parse_bytes("lots", "$AUTOMTL_DEVICE_BUDGET")
    monkeypatch.setenv("AUTOMTL_DATA_ON", "gpu")
    with pytest.raises(ConfigError, match="AUTOMTL_DATA_ON 'gpu': use auto, device or host"):
        resolve_data_on()
    assert resolve_data_on("HOST") == "host"


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DataConfig(options={"rows": 6000, "seed": 3}))


def test_measured_plan_uses_the_cpu_budget(ds, monkeypatch) -> None:
    from automtl.models import build_model

    model = build_model(ModelConfig(arch="mmoe", embedding_dim=4), ds.features, ds.tasks)
    est = estimate_model_bytes(model, 512, 4096, ds.splits["train"].sparse.shape[1])
    n_params = sum(p.numel() for p in model.parameters())
    assert est > 16 * n_params
    train = split_nbytes(ds.splits["train"])
    monkeypatch.setenv("AUTOMTL_DEVICE_BUDGET", "1T")
    big = plan_run(ds, "cpu", model, 512, 4096)
    assert big.streamed == [] and big.model_bytes >= est
    staging = STAGING_BATCHES * 4096 * max(row_bytes(s) for s in ds.splits.values())
    # a budget that holds the model, the reserve and the train split but not val/test as well
    monkeypatch.setenv("AUTOMTL_DEVICE_BUDGET", str(RESERVE_MIN + big.model_bytes + staging + train))
    plan = plan_run(ds, "cpu", model, 512, 4096)
    assert plan.placement["train"] == "device" and plan.streamed == ["val", "test"]


def test_streamed_batches_equal_resident_batches_row_for_row(ds) -> None:
    split = ds.splits["train"]
    resident, streamed = DeviceSplit.from_split(split), StreamedSplit.from_split(split, "cpu")
    for shuffle, drop_last in ((True, False), (False, False), (True, True)):
        a = list(iter_batches(resident, 700, shuffle, torch.Generator().manual_seed(5), drop_last))
        b = list(iter_batches(streamed, 700, shuffle, torch.Generator().manual_seed(5), drop_last))
        assert len(a) == len(b) > 1
        for x, y in zip(a, b):
            assert torch.equal(x.sparse, y.sparse) and torch.equal(x.dense, y.dense)
            assert torch.equal(x.labels, y.labels)
            assert x.sequences.keys() == y.sequences.keys()
            assert all(torch.equal(x.sequences[k], y.sequences[k]) for k in x.sequences)
    assert torch.equal(resident.slice(10, 20).labels, streamed.slice(10, 20).labels)
    streamed.close()


def test_fit_streamed_trains_exactly_like_resident(ds) -> None:
    model = ModelConfig(arch="mmoe", embedding_dim=4, n_experts=2, expert_dims=[16],
                        tower_dims=[8])
    cfg = TrialConfig(model=model, train=TrainConfig(epochs=2, batch_size=512, lr=1e-2,
                                                     device="cpu", patience=5))
    clear_device_cache()
    resident = fit(cfg, ds, data_on="device")
    streamed = fit(cfg, ds, data_on="host")
    assert "train host" in streamed.memory_plan and "train device" in resident.memory_plan
    assert streamed.val == resident.val and streamed.test == resident.test
    assert [r.train_loss for r in streamed.history] == [r.train_loss for r in resident.history]


def test_train_cli_data_on_prints_the_plan_and_refuses_bad_values(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    cfg.write_text("data: {name: synthetic, options: {rows: 3000}}\n"
                   "model: {arch: shared_bottom, embedding_dim: 4, bottom_dims: [8], "
                   "tower_dims: [4]}\ntrain: {epochs: 1, device: cpu}\n")
    run = [sys.executable, "-c", "import sys; from automtl.cli import main; sys.exit(main())",
           "train", "--config", str(cfg)]
    env = {**os.environ, "AUTOMTL_DEVICE_BUDGET": "1T"}
    out = subprocess.run(run + ["--data-on", "host"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "data plan on cpu: train host" in out.stderr + out.stdout
    bad = subprocess.run(run + ["--data-on", "gpu"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--data-on 'gpu': use auto, device or host" in bad.stderr
    assert "Traceback" not in bad.stderr
    nowhere = subprocess.run(run, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "AUTOMTL_DEVICE_BUDGET": "1M"})
    assert nowhere.returncode == 2 and "the model alone needs about" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
