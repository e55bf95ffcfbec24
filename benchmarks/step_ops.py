"""CPU time of the benchmark MMoE step, op by op, on ONE thread (load-robust: process CPU time).

A profiler's per-op times are wall-clock, so on a shared machine they count the time the thread
was preempted; here the step's larger ops are re-run alone at the exact shapes of the benchmark
MMoE (batch 2,048, 19 sparse fields + 4 sequences of 20 ids, embedding 16, one fused table of
344,161 rows; 8 experts [256, 128]) and timed with `time.process_time`, next to the whole step
(`throughput.py`'s model-only step) and the alternatives tried for the largest non-GEMM op, the
table gradient's scatter (`index_add_` of 202,752 lookup gradients).

    python benchmarks/step_ops.py [--precision bf16|fp32] [--rows 60000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402
from automtl.config import DataConfig, TrainConfig  # noqa: E402
from automtl.data import DeviceSplit, load_dataset  # noqa: E402
from automtl.losses import task_bce  # noqa: E402
from automtl.models import build_model  # noqa: E402
from automtl.train import make_optimizer  # noqa: E402
from automtl.train.device import tune_cpu_allocator  # noqa: E402


def cpu_ms(fn: Callable[[], object], n: int = 20) -> float:
    """CPU milliseconds per call of `fn` after 3 warm-up calls."""
    for _ in range(3):
        fn()
    c0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - c0) / n * 1e3


def whole_step(rows: int, precision: str) -> tuple[float, int]:
    """CPU-ms of the benchmark MMoE's training step (gather, forward, backward, fused Adam)
    and the rows of its embedding table."""
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    torch.manual_seed(0)
    model = build_model(throughput.model_config("mmoe"), ds.features, ds.tasks)
    opt = make_optimizer(TrainConfig(), model, torch.nn.Module())
    data = DeviceSplit.from_split(ds.splits["train"], "cpu")
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        b = data.take(torch.randint(0, len(data), (2048,), generator=gen))
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model.forward_tensor(b).t()
        task_bce(logits.float(), b.labels).sum().backward()
        opt.step()

    table = max(p.shape[0] for p in model.parameters() if p.dim() == 2)
    return cpu_ms(step, 30), table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--rows", type=int, default=60_000, help="synthetic rows (model/table only)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    tune_cpu_allocator()  # as `fit` does
    step, rows = whole_step(args.rows, args.precision)
    dt = torch.bfloat16 if args.precision == "bf16" else torch.float32
    b, d, lookups, bags = 2048, 16, 2048 * 99, 2048 * 23
    ids = torch.randint(0, rows, (lookups,))
    per = torch.randn(lookups, d)
    bag = torch.randint(0, bags, (lookups,))
    grad_bags, psw = torch.randn(bags, d), torch.rand(lookups)
    col = torch.arange(d)
    table = torch.zeros(rows, d)
    w = torch.nn.Parameter(torch.randn(rows, d))
    w.grad = torch.randn(rows, d)
    adam = torch.optim.Adam([w], fused=True)
    x, wt = torch.randn(b, 376, dtype=dt), torch.randn(376, 2048, dtype=dt)
    gy, h = torch.randn(b, 2048, dtype=dt), torch.randn(8, b, 256, dtype=dt)
    w2, g2 = torch.randn(8, 256, 128, dtype=dt), torch.randn(8, b, 128, dtype=dt)
    ops: dict[str, Callable[[], object]] = {
        "GEMM expert layer 1 forward (2048x376 @ 376x2048)": lambda: x @ wt,
        "GEMM expert layer 1 weight grad (x^T @ gy)": lambda: x.t() @ gy,
        "GEMM expert layer 1 input grad (gy @ w^T)": lambda: gy @ wt.t(),
        "GEMM expert layer 2 forward (8 x 2048x256 @ 256x128)": lambda: torch.bmm(h, w2),
        "GEMM expert layer 2 weight grad": lambda: torch.bmm(h.transpose(1, 2), g2),
        "GEMM expert layer 2 input grad": lambda: torch.bmm(g2, w2.transpose(1, 2)),
        f"table gradient: zeros [{rows:,}, 16] fp32": lambda: torch.zeros(rows, d),
        "table gradient: index_add_ of 202,752 rows (used)": lambda: table.index_add_(0, ids, per),
        "  alternative: index_put_(accumulate=True)": lambda: table.index_put_((ids,), per,
                                                                               accumulate=True),
        "  alternative: flat 1-D index_add_ (+ index build)": lambda: table.view(-1).index_add_(
            0, (ids.unsqueeze(1) * d + col).reshape(-1), per.reshape(-1)),
        "per-lookup gradient: index_select + mul_": lambda: grad_bags.index_select(0, bag).mul_(
            psw.unsqueeze(1)),
        "fused Adam over the table": adam.step,
        "ReLU forward [2048, 2048]": lambda: torch.relu(gy),
        "ReLU backward [2048, 2048]": lambda: torch.ops.aten.threshold_backward(gy, gy, 0),
        "bias gradient sum [2048, 2048]": lambda: gy.sum(0),
    }
    print(f"benchmark MMoE, {args.precision}, 1 thread: whole step {step:.1f} CPU-ms "
          f"(table {rows:,} rows)")
    gemm = 0.0
    for name, fn in ops.items():
        ms = cpu_ms(fn)
        gemm += ms if name.startswith("GEMM") else 0.0
        print(f"  {name:56} {ms:7.2f} CPU-ms  {ms / step:6.1%}")
    print(f"  {'the six large GEMMs together':56} {gemm:7.2f} CPU-ms  {gemm / step:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
