"""The benchmark MMoE's training step vs batch size, eager and CUDA-graph captured (issue 14).

What does it take to reach 50% of the bf16 matmul peak? The step `fit` runs (`automtl.train.step`:
the same model, loss, fused Adam and bf16 autocast) is timed alone on batches already resident
on the device, at several batch sizes, as
- `eager`: `TrainStep` called as `fit` calls it;
- `graph` (CUDA): the step captured once in a `torch.cuda.CUDAGraph` over static batch buffers
  (each batch copied in, then one replay: forward, backward, capturable fused Adam); 3 warm-up
  steps on a side stream first, as torch's whole-network capture recipe does. On CPU the same
  object runs the copy-in and the eager step without a capture (`static`): the CPU twin that
  the tests check against the eager step, loss for loss;
- `compile` (optional, `--compile MODE`): the forward compiled by `torch.compile` (loss and
  optimizer eager).
Samples/s and the matmul FLOP rate (FLOPs per sample from FlopCounterMode, as `throughput.py`)
as a % of the measured bf16 matmul peak; a parity row compares the losses of the same steps
eager vs graph (static on CPU) from the same initial weights.

    python benchmarks/step_scaling.py --device cuda --batches 2048,8192,32768,65536
    python benchmarks/step_scaling.py --device cpu --batches 256,1024 --steps 3   # CPU twin
`gpu_check.py` runs it as its `steps` part.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import throughput  # noqa: E402
from automtl.config import DataConfig, TrainConfig, TrialConfig  # noqa: E402
from automtl.data import DeviceSplit, load_dataset  # noqa: E402
from automtl.data.batching import Batch  # noqa: E402
from automtl.data.schema import Dataset  # noqa: E402
from automtl.train import TrainStep, build_train_step, resolve_device, seed_everything  # noqa: E402

Row = tuple[str, str, str]
WARMUP = 3  # eager warm-up steps before a capture (torch's recipe: on a side stream)
GFLOP_PER_SAMPLE: dict[str, float] = {}  # "mmoe": matmul GFLOP per sample, once counted


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StaticStep:
    """`TrainStep` over static batch buffers: every call copies its batch into the buffers and
    runs the step on them. With `capture` (CUDA), the step after `WARMUP` eager ones is captured
    in a CUDA graph and every later call is copy-in + one replay; the returned loss is then the
    graph's output tensor, overwritten by the next replay (clone it to keep it). Without
    `capture` (CPU) it is the same copy-in and an eager step: the path minus the capture."""

    def __init__(self, step: TrainStep, example: Batch, capture: bool, epoch: int = 1) -> None:
        self.step, self.capture, self.epoch = step, capture, epoch
        self.static = Batch(sparse=example.sparse.clone(), dense=example.dense.clone(),
                            sequences={k: v.clone() for k, v in example.sequences.items()},
                            labels=example.labels.clone())
        self.graph: torch.cuda.CUDAGraph | None = None
        self.side = torch.cuda.Stream() if capture else None  # the warm-ups' stream
        self.loss: torch.Tensor | None = None
        self.calls = 0

    def copy_in(self, batch: Batch) -> None:
        s = self.static
        if len(batch) != len(s):
            raise ValueError(f"batch of {len(batch)} rows; the static buffers hold {len(s)}")
        s.sparse.copy_(batch.sparse, non_blocking=True)
        s.dense.copy_(batch.dense, non_blocking=True)
        for k, v in s.sequences.items():
            v.copy_(batch.sequences[k], non_blocking=True)
        s.labels.copy_(batch.labels, non_blocking=True)

    def __call__(self, batch: Batch) -> torch.Tensor:
        self.copy_in(batch)
        self.calls += 1
        if not self.capture:
            return self.step(self.static, self.epoch)
        if self.graph is None and self.calls <= WARMUP:
            assert self.side is not None
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.step(self.static, self.epoch)
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        if self.graph is None:
            # grads are allocated by the captured backward (in the graph's pool) and refilled
            # by every replay: none may exist before the capture
            self.step.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):  # records only: the replay below runs this step
                self.loss = self.step(self.static, self.epoch)
            self.graph = graph
        self.graph.replay()
        assert self.loss is not None
        return self.loss


def benchmark_data(rows: int) -> Dataset:
    """Synthetic Ali-CCP-schema data (what throughput.py and gpu_check use)."""
    return load_dataset(DataConfig(name="synthetic", options={"rows": rows, "schema": "ali-ccp",
                                                             "n_tasks": 2}))


def trial(batch: int, device: torch.device, precision: str = "bf16") -> TrialConfig:
    return TrialConfig(data=DataConfig(name="synthetic"), model=throughput.model_config("mmoe"),
                       train=TrainConfig(batch_size=batch, lr=1e-3, seed=0, device=str(device),
                                         precision=precision))  # type: ignore[arg-type]


def resident_batches(split: DeviceSplit, batch: int) -> list[Batch]:
    """Consecutive batches of `batch` rows of a device-resident split (views, no copies)."""
    return [split.slice(i * batch, (i + 1) * batch) for i in range(len(split) // batch)]


def cycle(batches: list[Batch]) -> Iterator[Batch]:
    while True:
        yield from batches


def make_step(ds: Dataset, batch: int, device: torch.device, precision: str,
              capturable: bool) -> TrainStep:
    cfg = trial(batch, device, precision)
    seed_everything(cfg.train.seed)  # as fit: the same initial weights for every variant
    step = build_train_step(cfg, ds, device, capturable=capturable)
    step.model.train()
    return step


def gflop_per_sample(ds: Dataset, batch: Batch, device: torch.device, precision: str) -> float:
    """Matmul GFLOP per sample of one training step (FlopCounterMode; linear in the batch)."""
    if "mmoe" not in GFLOP_PER_SAMPLE:
        step = make_step(ds, len(batch), device, precision, capturable=False)
        GFLOP_PER_SAMPLE["mmoe"] = throughput.flops_per_step(lambda: step(batch)) / len(batch) / 1e9
    return GFLOP_PER_SAMPLE["mmoe"]


def step_losses(call: Callable[[Batch], torch.Tensor], batches: list[Batch]) -> list[float]:
    """The loss of each call, in order (read after all of them: one sync)."""
    out = [call(b).clone() for b in batches]
    return torch.stack(out).tolist()


def parity(ds: Dataset, split: DeviceSplit, batch: int, n: int, device: torch.device,
           precision: str) -> tuple[list[float], list[float]]:
    """Losses of `n` steps eager and through `StaticStep` (captured on CUDA) from the same
    initial weights on the same batches."""
    batches = [b for _, b in zip(range(n), cycle(resident_batches(split, batch)))]
    eager = make_step(ds, batch, device, precision, capturable=False)
    first = step_losses(lambda b: eager(b), batches)
    cuda = device.type == "cuda"
    static = StaticStep(make_step(ds, batch, device, precision, capturable=cuda), batches[0],
                        capture=cuda)
    return first, step_losses(static, batches)


def time_variant(ds: Dataset, batches: list[Batch], variant: str, steps: int,
                 device: torch.device, precision: str) -> float:
    """Seconds per step of `variant` (eager | graph | static) cycling over `batches`."""
    cuda = device.type == "cuda"
    step = make_step(ds, len(batches[0]), device, precision, capturable=variant == "graph")
    call: Callable[[Batch], torch.Tensor] = step
    if variant != "eager":
        call = StaticStep(step, batches[0], capture=cuda)
        for bt, _ in zip(cycle(batches), range(WARMUP + 1)):  # warm-up (+ the capture)
            call(bt)
    it = cycle(batches)
    return throughput.timed_steps(lambda: call(next(it)), steps, device)


def run(ds: Dataset, device: torch.device, batch_sizes: list[int], steps: int, peak: float,
        rows: list[Row], left: Callable[[], float] = lambda: math.inf, parity_steps: int = 8,
        precision: str = "bf16", compile_mode: str | None = None) -> None:
    """Append the step rows (see the module docstring) to `rows`; `peak` in GFLOP/s; a batch
    size or variant is skipped with a row when `left()` seconds would not cover it. Every eager
    row comes before the first capture: a failed capture can leave the CUDA context unusable."""
    split = DeviceSplit.from_split(ds.splits["train"], device)
    cuda = device.type == "cuda"
    variants = ["eager", "graph" if cuda else "static"]
    gflop = None
    best: tuple[float, str] = (0.0, "")
    rates: dict[tuple[int, str], float] = {}
    failed = ""  # the first failed capture: later ones are not tried
    for variant in variants:
        for b in batch_sizes:
            name = f"step B={b:,} {variant}"
            need = 2.0 + steps * b * 2e-7 if cuda else 0.0  # ~0.2 us/sample at most, + setup
            if len(split) < b:
                if variant == variants[0]:
                    rows.append((f"step B={b:,}", "skipped",
                                 f"{len(split):,} train rows < one batch"))
                continue
            if left() < need or failed:
                rows.append((name, "skipped", failed or f"{left():.0f} s left"))
                continue
            batches = resident_batches(split, b)
            try:
                sec = time_variant(ds, batches, variant, steps, device, precision)
                gflop = gflop_per_sample(ds, batches[0], device, precision)
            except torch.cuda.OutOfMemoryError:
                rows.append((name, "out of device memory", ""))
                continue
            except Exception as exc:  # a failed capture must not hide the other rows
                rows.append((name, f"FAILED: {type(exc).__name__}: {str(exc)[:160]}", ""))
                failed = f"the capture failed at B={b:,}" if variant == "graph" else ""
                continue
            finally:
                del batches
                if cuda:
                    torch.cuda.empty_cache()
            rates[b, variant] = b / sec
            frac = gflop * rates[b, variant] / peak
            if frac > best[0]:
                best = (frac, f"B={b:,} {variant}")
            vs = f", {rates[b, variant] / rates[b, 'eager']:.2f}x eager" if variant != "eager" \
                and (b, "eager") in rates else ""
            rows.append((name, f"{rates[b, variant]:,.0f} samples/s, {frac:.1%} of bf16 peak{vs}",
                         f"{sec * 1e3:.2f} ms/step, {steps} timed steps"
                         + (", captured after 3 warm-ups" if variant == "graph" else
                            "; CPU twin of graph (copy-in, no capture)" if variant == "static"
                            else "")))
    if gflop is not None:
        rows.append(("step FLOPs per sample", f"{gflop * 1e3:.2f} MFLOP",
                     "FlopCounterMode: matmuls of forward + backward (the bound on % of peak)"))
    if compile_mode:
        run_compile(ds, split, device, batch_sizes, steps, peak, gflop, rows, left, precision,
                    compile_mode)
    b0 = batch_sizes[0]
    if left() < 5 or len(split) < b0 or failed:
        rows.append(("step parity eager vs " + variants[1], "skipped",
                     failed or f"{left():.0f} s left"))
    else:
        try:
            a, g = parity(ds, split, b0, parity_steps, device, precision)
            same = sum(x == y for x, y in zip(a, g))
            worst = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, g))
            rows.append((f"step parity eager vs {variants[1]} ({parity_steps} steps, B={b0:,})",
                         f"{same}/{len(a)} losses bit-equal, max rel. diff {worst:.1e}",
                         "parity: rel. diff <= 1e-5 (" + ("met" if worst <= 1e-5 else "NOT met")
                         + f"); losses {a[0]:.4f} .. {a[-1]:.4f}"))
        except Exception as exc:
            rows.append((f"step parity eager vs {variants[1]}",
                         f"FAILED: {type(exc).__name__}: {str(exc)[:160]}", ""))
    if best[1]:
        rows.append(("step: best % of bf16 peak", f"{best[0]:.1%} at {best[1]}",
                     "target >= 50% (GPU); see RESULTS.md 'Session 5' for the estimate"))


def run_compile(ds: Dataset, split: DeviceSplit, device: torch.device, batch_sizes: list[int],
                steps: int, peak: float, gflop: float | None, rows: list[Row],
                left: Callable[[], float], precision: str, mode: str) -> None:
    """The forward (+ its backward) compiled by torch.compile at the largest batch size that
    fits; loss and fused Adam eager. `mode` "eager" = dynamo's eager backend (CPU twin)."""
    b = max(x for x in batch_sizes if x <= len(split))
    if left() < 30 and device.type == "cuda":
        rows.append((f"step B={b:,} compile", "skipped", f"{left():.0f} s left, needs ~30-60 s"))
        return
    try:
        step = make_step(ds, b, device, precision, capturable=False)
        batches = resident_batches(split, b)
        gflop = gflop or gflop_per_sample(ds, batches[0], device, precision)
        kw = {"backend": "eager"} if mode == "eager" else {"mode": mode}
        step.forward = torch.compile(step.forward, dynamic=False, **kw)  # type: ignore[call-overload]
        it = cycle(batches)
        t0 = time.perf_counter()
        for _ in range(3):
            step(next(it))
        _sync(device)
        warm = time.perf_counter() - t0
        sec = throughput.timed_steps(lambda: step(next(it)), steps, device)
    except Exception as exc:
        rows.append((f"step B={b:,} compile", f"FAILED: {type(exc).__name__}: {str(exc)[:160]}",
                     ""))
        return
    frac = f", {gflop * b / sec / peak:.1%} of bf16 peak" if gflop else ""
    rows.append((f"step B={b:,} compile ({mode})", f"{b / sec:,.0f} samples/s{frac}",
                 f"{sec * 1e3:.2f} ms/step; compile + 3 warm-ups {warm:.0f} s"))


class PrintedRows(list[Row]):
    """Rows also printed, tab-separated after "ROW", the moment they exist: `gpu_check.py` runs
    this module in a child process (a failed CUDA graph capture can leave the CUDA context
    unusable) and keeps every row it read, even when it must stop the child at its deadline."""

    def append(self, row: Row) -> None:
        super().append(row)
        print("ROW\t" + "\t".join(x.replace("\t", " ").replace("\n", " ") for x in row),
              flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="2048,8192,32768,65536")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per batch size and variant")
    ap.add_argument("--rows", type=int, default=None,
                    help="synthetic rows (default: enough for 2 batches of the largest size)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parity-steps", type=int, default=8)
    ap.add_argument("--peak", type=float, default=None,
                    help="the bf16 matmul peak in GFLOP/s (default: measured here)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="skip, with a row, what would not finish in this many seconds")
    ap.add_argument("--compile", default=None, metavar="MODE",
                    help="also time the torch.compile'd forward (default, reduce-overhead, "
                         "max-autotune-no-cudagraphs; eager = dynamo only)")
    ap.add_argument("--only-compile", action="store_true",
                    help="only the compile row (at the largest batch size)")
    ap.add_argument("--row-lines", action="store_true",
                    help="print each row as a ROW line the moment it exists (gpu_check.py)")
    args = ap.parse_args(argv)
    end = None if args.budget_s is None else time.perf_counter() + args.budget_s
    left: Callable[[], float] = (lambda: math.inf) if end is None else (
        lambda: end - time.perf_counter())
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = [int(x) for x in args.batches.split(",")]
    ds = benchmark_data(args.rows or int(max(sizes) * 2 / 0.8) + 10)
    rows: list[Row] = PrintedRows() if args.row_lines else []
    peak = args.peak
    if peak is None:
        peak = throughput.matmul_peak(device, torch.bfloat16, tries=3)
        rows.append(("bf16 matmul peak (2048^3)", f"{peak:,.0f} GFLOP/s", "measured"))
    if args.only_compile:
        split = DeviceSplit.from_split(ds.splits["train"], device)
        run_compile(ds, split, device, sizes, args.steps, peak, None, rows, left,
                    args.precision, args.compile or "default")
    else:
        run(ds, device, sizes, args.steps, peak, rows, left, args.parity_steps, args.precision,
            args.compile)
    if not args.row_lines:
        w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
        for r in rows:
            print(f"{r[0]:{w0}}  {r[1]:{w1}}  {r[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
