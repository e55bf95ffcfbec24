"""benchmarks/step_scaling.py on CPU: the static-buffer step (the CUDA-graph path minus the
capture) trains exactly like the eager step of `fit`, and the part prints its rows in order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import step_scaling  # noqa: E402
from automtl.data import DeviceSplit  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data() -> tuple[object, DeviceSplit]:
    torch.set_num_threads(1)
    ds = step_scaling.benchmark_data(1_000)  # 800 train rows
    return ds, DeviceSplit.from_split(ds.splits["train"], CPU)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_static_buffer_step_matches_the_eager_step_loss_for_loss(data, precision) -> None:
    ds, split = data
    batches = step_scaling.resident_batches(split, 128)[:5]  # 5 distinct batches
    eager = step_scaling.step_losses(
        step_scaling.make_step(ds, 128, CPU, precision, capturable=False), batches)
    static_step = step_scaling.make_step(ds, 128, CPU, precision, capturable=False)
    static = step_scaling.StaticStep(static_step, batches[-1], capture=False)
    assert step_scaling.step_losses(static, batches) == eager  # bit-equal, every step
    # the buffers hold the last batch copied in (not the example they were cloned from)
    assert torch.equal(static.static.sparse, batches[-1].sparse)
    assert all(torch.equal(static.static.sequences[k], batches[-1].sequences[k])
               for k in static.static.sequences)
    # the comparison sees the data: the same steps on the first batch only give other losses
    same_batch = step_scaling.step_losses(
        step_scaling.make_step(ds, 128, CPU, precision, capturable=False), [batches[0]] * 5)
    assert same_batch[0] == eager[0] and same_batch[1:] != eager[1:]
    # and the weights after the static steps are the eager ones
    ref = step_scaling.make_step(ds, 128, CPU, precision, capturable=False)
    for b in batches:
        ref(b)
    for p, q in zip(ref.model.parameters(), static_step.model.parameters()):
        assert torch.equal(p, q)


def test_static_step_refuses_a_batch_of_another_size(data) -> None:
    ds, split = data
    b128, b64 = split.slice(0, 128), split.slice(0, 64)
    static = step_scaling.StaticStep(step_scaling.make_step(ds, 128, CPU, "fp32", False), b128,
                                     capture=False)
    with pytest.raises(ValueError, match="64 rows; the static buffers hold 128"):
        static(b64)


def test_step_rows_in_order_with_parity_and_a_skip(data) -> None:
    ds, _ = data
    rows: list[tuple[str, str, str]] = []
    step_scaling.run(ds, CPU, [64, 256, 1024], 1, 100.0, rows, parity_steps=3)
    names = [r[0] for r in rows]
    # every eager row first (a failed capture on CUDA can break the context for what follows)
    assert names == ["step B=64 eager", "step B=256 eager", "step B=1,024", "step B=64 static",
                     "step B=256 static", "step FLOPs per sample",
                     "step parity eager vs static (3 steps, B=64)", "step: best % of bf16 peak"]
    assert "samples/s" in rows[0][1] and "of bf16 peak" in rows[0][1]
    assert "x eager" in rows[3][1] and "CPU twin" in rows[3][2]
    assert rows[2][1] == "skipped" and "800 train rows" in rows[2][2]
    assert float(rows[5][1].split()[0]) > 6.0  # ~6.34 MFLOP: 3 x 2 x the MMoE's MACs
    assert rows[6][1].startswith("3/3 losses bit-equal") and "(met)" in rows[6][2]
    assert not any("FAILED" in r[1] for r in rows)
    # a part out of time skips each variant with a row instead of running it
    late: list[tuple[str, str, str]] = []
    step_scaling.run(ds, torch.device("cpu"), [64], 1, 100.0, late, left=lambda: 0.0)
    assert [r[1] for r in late if r[0].startswith("step parity")] == ["skipped"]


def test_compiled_forward_runs_on_cpu_with_dynamo_only(data) -> None:
    ds, split = data
    rows: list[tuple[str, str, str]] = []
    step_scaling.run_compile(ds, split, CPU, [128], 1, 100.0, None, rows, lambda: 1e9, "fp32",
                             "eager")
    assert len(rows) == 1 and rows[0][0] == "step B=128 compile (eager)", rows
    assert "samples/s" in rows[0][1]


def test_fit_trains_with_the_step_the_benchmark_times(data) -> None:
    """`fit`'s epoch is `build_train_step`'s step over its shuffled batches: same mean loss and
    the same weights after one epoch (so the benchmark times what `fit` runs)."""
    from automtl.data.batching import iter_batches
    from automtl.train import build_train_step, fit, seed_everything

    ds, split = data
    cfg = step_scaling.trial(256, CPU, "fp32")
    cfg.train.epochs = 1
    res = fit(cfg, ds)
    seed_everything(cfg.train.seed)
    step = build_train_step(cfg, ds, CPU)
    step.model.train()
    total = torch.zeros(())
    batches = list(iter_batches(split, 256, shuffle=True,
                                generator=torch.Generator().manual_seed(cfg.train.seed)))
    for b in batches:
        total += step(b)
    assert float(total) / len(batches) == res.history[0].train_loss
    for (name, p), q in zip(step.model.named_parameters(), res.model.parameters()):
        assert torch.equal(p, q), name
