"""Where a training step's time goes on a memory-mapped cache: batch gather vs forward/backward
vs optimizer, with the page faults of each phase, on the first N training rows of a cache.

Builds the same objects `fit` does (benchmark MMoE of `scale.py`, its loss, `make_optimizer`,
the resident CPU split over the copy-on-write mapping, `iter_batches`' permutation) and times
each phase of `--steps` steps with the process's CPU time and `getrusage` minor/major page
faults; prints per-step means over the steps after the first 3. The same cache at two
`--train-rows` values isolates the effect of the split's size (same model, batch, vocabulary).

    python benchmarks/step_profile.py --data DIR --train-rows 450000 8900000 --steps 60
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from automtl.data.batching import DeviceSplit, iter_batches  # noqa: E402
from automtl.data.columnar import load_columnar  # noqa: E402
from automtl.data.pages import available_bytes  # noqa: E402
from automtl.data.schema import Dataset  # noqa: E402


def _usage() -> tuple[float, float, int, int]:
    """(wall s, CPU s of this process, minor faults, major faults)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime + r.ru_stime, r.ru_minflt, r.ru_majflt


def _prefix(ds: Dataset, rows: int) -> DeviceSplit:
    sp = ds.splits["train"]
    k = min(rows, len(sp))
    cut = dataclasses.replace(sp, sparse=sp.sparse[:k], dense=sp.dense[:k],
                              labels=sp.labels[:k], truth=None,
                              sequences={n: a[:k] for n, a in sp.sequences.items()})
    return DeviceSplit.from_split(cut, "cpu")


def profile(ds: Dataset, rows: int, steps: int, precision: str, optimizer: str,
            paging: str = "on", streamed: bool = False) -> dict[str, float]:
    """Per-step means (after 3 warm-up steps) of each phase's wall/CPU ms and faults."""
    from scale import _mmoe  # the benchmark MMoE of the scale runs

    from automtl.losses import build_loss
    from automtl.models import build_model
    from automtl.train.device import autocast, tune_cpu_allocator
    from automtl.train.loop import make_optimizer, seed_everything
    from automtl.train.metrics import train_outputs_fn

    cfg = _mmoe(1, 2048, precision)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer=optimizer))
    tune_cpu_allocator()
    seed_everything(0)
    model = build_model(cfg.model, ds.features, ds.tasks, cfg.loss.weighting)
    loss_fn = build_loss(cfg.loss, ds.tasks, model, ds.name)
    opt = make_optimizer(cfg.train, model, loss_fn)
    forward = train_outputs_fn(model, [t.name for t in ds.tasks])
    dev = torch.device("cpu")
    data = _prefix(ds, rows)
    if paging == "off":  # the kernel's default paging, as before automtl.data.pages
        import automtl.data.batching as batching

        class _NoPager:
            def __init__(self, maps: object, shuffle: bool) -> None:
                pass

            def batch_done(self) -> None:
                pass

            def end(self) -> None:
                pass

        batching.PassPager = _NoPager  # type: ignore[misc,assignment]
    if streamed:  # the plan's "host" placement: gathered one batch ahead by a second thread
        from automtl.data.streaming import StreamedSplit

        data = StreamedSplit(data, "cpu")  # type: ignore[assignment]
    batches = iter_batches(data, 2048, shuffle=True, generator=torch.Generator().manual_seed(0))
    phases = ("gather", "fwd_bwd", "optim")
    tot = {f"{p}_{k}": 0.0 for p in phases for k in ("wall", "cpu", "minflt", "majflt")}
    peak_file = 0
    for step in range(steps):
        u0 = _usage()
        batch = next(batches)
        u1 = _usage()
        with autocast(dev, precision):
            logits, heads = forward(batch)
        lo = loss_fn(logits.float(), batch.labels, 0, heads)
        opt.zero_grad(set_to_none=True)
        lo.total.backward()
        u2 = _usage()
        opt.step()
        u3 = _usage()
        peak_file = max(peak_file, _rss_file())
        if step < 3:
            continue
        for p, (a, b) in zip(phases, ((u0, u1), (u1, u2), (u2, u3))):
            for k, i in (("wall", 0), ("cpu", 1), ("minflt", 2), ("majflt", 3)):
                tot[f"{p}_{k}"] += b[i] - a[i]
    n = steps - 3
    out = {k: v / n * (1000 if k.endswith(("wall", "cpu")) else 1) for k, v in tot.items()}
    out["rss_file_gib"] = peak_file / (1 << 30)
    data.release_pages()
    return out


def _evict(folder: Path) -> None:
    """Drop the cache's files from the page cache (only these files), for a cold start."""
    for f in folder.rglob("*.bin"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _rss_file() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--train-rows", type=int, nargs="+", default=[450_000])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--streamed", action="store_true",
                    help="stream the split (gather one batch ahead in a thread; 'gather' is then "
                         "the wait for it)")
    ap.add_argument("--release-every", type=int, default=None,
                    help="override automtl.data.pages.RELEASE_EVERY (batches between unmaps)")
    ap.add_argument("--cold", action="store_true",
                    help="evict the cache's files from the page cache before each measurement")
    ap.add_argument("--readahead", default="on", choices=["on", "off"],
                    help="off: no reads in flight for the next batch (automtl.data.pages."
                         "READ_AHEAD); only acts where the split does not fit")
    ap.add_argument("--paging", default="on", choices=["on", "off"],
                    help="off: the kernel's default paging (no hints, no periodic release)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import automtl.data.pages as pages

    if args.release_every:
        pages.RELEASE_EVERY = args.release_every
    pages.READ_AHEAD = args.readahead == "on"
    os.environ.setdefault("AUTOMTL_CACHE", "off")
    ds = load_columnar(args.data)
    where = "streamed" if args.streamed else "resident"
    print(f"{args.data}: {len(ds.splits['train']):,} train rows; {args.precision}, "
          f"{args.optimizer}, paging {args.paging}, readahead {args.readahead}, {where}, "
          f"{args.threads} thread(s), release every "
          f"{args.release_every or 'default'}, "
          f"{args.steps} steps (means of the last {args.steps - 3}); load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'train rows':>11} | {'gather ms wall/CPU':>18} {'minflt':>7} {'majflt':>6} | "
          f"{'fwd+bwd wall/CPU':>16} {'minflt':>6} | {'optim wall/CPU':>14} | RssFile peak")
    for rows in args.train_rows:
        if args.cold:
            _evict(args.data)
        avail = available_bytes() or 0
        print(f"  (available host memory {avail / (1 << 30):.1f} GiB)", flush=True)
        r = profile(ds, rows, args.steps, args.precision, args.optimizer, args.paging,
                    args.streamed)
        print(f"{min(rows, len(ds.splits['train'])):>11,} | {r['gather_wall']:8.1f} /"
              f"{r['gather_cpu']:7.1f} {r['gather_minflt']:7.0f} {r['gather_majflt']:6.0f} | "
              f"{r['fwd_bwd_wall']:7.1f} /{r['fwd_bwd_cpu']:7.1f} {r['fwd_bwd_minflt']:6.0f} | "
              f"{r['optim_wall']:6.1f} /{r['optim_cpu']:6.1f} | {r['rss_file_gib']:.2f} GiB",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
