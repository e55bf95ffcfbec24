"""Throughput options of a trial and a search: bf16 on CPU, memory-mapped data shared with the
CPU DeviceSplit, the CPU allocator setting, and `--trials-per-device` (CUDA only)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from automtl.cli import main
from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig
from automtl.data import DeviceSplit, load_dataset
from automtl.data.columnar import load_columnar, save_dataset
from automtl.errors import AutomtlError
from automtl.search.distributed import expand_devices
from automtl.train import fit, tune_cpu_allocator
from smaps import resident_kb


pytestmark = pytest.mark.usefixtures("one_thread")  # restored after the module (it used to leak)


@pytest.fixture(scope="module")
def ds():
    return load_dataset(DataConfig(name="synthetic", options={"rows": 12000, "seed": 0}))


def _cfg(arch: str, precision: str) -> TrialConfig:
    model = ModelConfig(arch=arch, n_experts=4, n_levels=2, n_shared_experts=1,  # type: ignore[arg-type]
                        n_specific_experts=1, embedding_dim=8, expert_dims=[32, 16],
                        tower_dims=[16])
    return TrialConfig(model=model, train=TrainConfig(epochs=2, batch_size=512, lr=3e-3,
                                                      device="cpu", precision=precision))


@pytest.mark.parametrize("arch", ["mmoe", "ple"])
def test_bf16_on_cpu_trains_to_the_fp32_auc(ds, arch: str) -> None:
    fp32 = fit(_cfg(arch, "fp32"), ds)
    bf16 = fit(_cfg(arch, "bf16"), ds)
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert bf16.val["mean_auc"] > 0.53  # learns (2 short epochs on tiny data)
    for metric in ("ctr_auc", "ctcvr_auc"):
        assert abs(bf16.val[metric] - fp32.val[metric]) < 0.01, (metric, bf16.val, fp32.val)
    assert bf16.val != fp32.val  # the bf16 run really ran in reduced precision


def _mapping_of(address: int) -> str:
    """The file (or [anon]) backing `address` in this process, from /proc/self/maps."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return parts[5] if len(parts) > 5 else "[anon]"
    return "[none]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_cpu_device_split_shares_the_memory_map_and_copies_on_write(ds, tmp_path: Path) -> None:
    folder = save_dataset(ds, tmp_path / "cols")
    cached = load_columnar(folder)
    split = cached.splits["train"]
    data = DeviceSplit.from_split(split, "cpu")
    # the tensors live in the column files' pages, not in a private copy
    assert _mapping_of(data.sparse.data_ptr()) == str(folder / "train" / "sparse.bin")
    assert _mapping_of(data.sequences[next(iter(split.sequences))].data_ptr()).startswith(
        str(folder / "train" / "seq"))
    assert torch.equal(data.sparse, torch.from_numpy(np.asarray(ds.splits["train"].sparse)))
    # writable, but a write stays private to the process (copy-on-write)
    before = int(split.sparse[0, 0])
    data.sparse[0, 0] = before + 7
    assert int(split.sparse[0, 0]) == before
    assert int(load_columnar(folder).splits["train"].sparse[0, 0]) == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_release_pages_drops_the_mapped_pages_of_a_file_backed_split(ds, tmp_path: Path) -> None:
    folder = save_dataset(ds, tmp_path / "cols")
    data = DeviceSplit.from_split(load_columnar(folder).splits["train"], "cpu")
    assert len(data.maps) == 3 + len(data.sequences)  # sparse, dense, labels, sequences
    seq_file = folder / "train" / "seq0.bin"
    total = data.take(torch.arange(len(data))).sequences  # touches every page
    assert resident_kb(seq_file) > 0
    data.release_pages()
    assert resident_kb(seq_file) == 0
    # the data is still there: the next access maps it again
    again = data.take(torch.arange(len(data))).sequences
    assert all(torch.equal(total[k], again[k]) for k in total)
    assert DeviceSplit.from_split(ds.splits["train"], "cpu").maps == []  # in memory: nothing


def test_in_memory_split_is_shared_and_read_only_arrays_are_copied(ds) -> None:
    split = ds.splits["val"]
    data = DeviceSplit.from_split(split, "cpu")
    assert data.sparse.data_ptr() == split.sparse.__array_interface__["data"][0]
    frozen = np.array(split.dense)
    frozen.flags.writeable = False
    from dataclasses import replace

    copied = DeviceSplit.from_split(replace(split, dense=frozen), "cpu")
    assert np.array_equal(copied.dense.numpy(), frozen)
    assert not np.shares_memory(copied.dense.numpy(), frozen)  # read-only: torch gets a copy


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_cpu_allocator_is_tuned_once() -> None:
    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator() is True  # idempotent


def test_trials_per_device_expands_cuda_devices_and_refuses_cpu() -> None:
    assert expand_devices(["cuda:0", "cuda:1"], 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert expand_devices(["cpu"], 1) == ["cpu"]
    with pytest.raises(AutomtlError, match="needs CUDA devices.*--workers N"):
        expand_devices(["cpu"], 2)
    with pytest.raises(AutomtlError, match="needs CUDA devices"):
        expand_devices([], 3)
    with pytest.raises(AutomtlError, match="must be >= 1"):
        expand_devices(["cuda:0"], 0)


def test_search_cli_refuses_trials_per_device_on_cpu(tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.db"
    rc = main(["search", "--dataset", "synthetic", "--n-trials", "2", "--storage",
               f"sqlite:///{db}", "--device", "cpu", "--trials-per-device", "2", "--no-report"])
    out, err = capfd.readouterr()
    assert rc == 2
    assert "needs CUDA devices" in out + err and "--workers N" in out + err
    assert not db.exists()  # refused before any study was created


def test_importing_automtl_makes_openmp_threads_wait_passively_unless_the_user_chose() -> None:
    """OMP_WAIT_POLICY=PASSIVE is set before torch loads libgomp (a fresh interpreter), and a
    user's own setting is kept."""
    import os
    import subprocess

    code = ("import os, automtl, torch; print(os.environ['OMP_WAIT_POLICY'], "
            "torch.get_num_threads() > 0)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["PASSIVE", "True"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["ACTIVE", "True"]
