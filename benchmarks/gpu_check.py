"""The prepared GPU check (issue 14): one command, about 7 minutes on one modern GPU, ONE table.

    bash benchmarks/gpu_check.sh --fetch-wheels  # once, where pip reaches PyPI: cp312 wheels of
                                                 # what a bare GPU image lacks, into .whl/
    bash benchmarks/gpu_check.sh                 # on a GPU box (cuda:0): installs .whl/ first
    bash benchmarks/gpu_check.sh --dry-run       # tiny sizes on CPU (CI runs this)

Rows (each on the same device and data), in the order run:
- MMoE / PLE training samples/s, automtl fp32 and bf16 vs torch-rechub 0.9 (fp32, its own
  MTLTrainer loop and DataLoader on the same device; timed on `peer_steps` batches, since its
  per-row collation makes a whole 800k-row epoch cost minutes), the ratio, and the bf16 step's
  matmul FLOP rate as a % of the measured bf16 matmul peak;
- AUC parity: bf16 minus fp32 test AUC of the same model and seed;
- the MMoE training step alone vs batch size (2,048 .. 262,144, resident batches): samples/s and
  % of the bf16 peak eager and captured in a CUDA graph, with a loss-parity row
  (`step_scaling.py`): what it takes to reach 50% of the peak;
- a 20-trial search on 1M synthetic rows with the shipped `synthetic` preset (what `automtl
  search` runs: quick space, budget of 3 trainings: baseline, probes, final): wall time,
  trials/hour, states; a `timeout` keeps it inside the budget;
- export reproducibility: the search's best fully trained trial's stored val AUC vs retraining
  its stored config (`automtl train` semantics: `fit` of the stored TrialConfig); skipped with a
  row when the retraining would not fit the time left;
- resident vs streamed (`--data-on host`) samples/s of the benchmark MMoE, and the chunked
  host->device copy of the train split (GB/s, host staging);
- trials per device K = 1/2/4/8 (one data copy shared by K trial processes,
  `automtl.train.sharing`): trials/hour and mean GPU utilisation (nvidia-smi; CPU % on CPU);
- last, only when the budget still has ~45 s: the step with its forward `torch.compile`d
  (inductor's fused elementwise kernels) at the largest batch size.
Each part catches its own failure and prints it in its row, so one broken part does not hide
the others; a part that would start with less than its minimum time left is skipped with a row.
Python packages a part needs and this machine lacks are named in one line before the table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import throughput  # noqa: E402  (benchmarks/throughput.py: the models, peer and peak)
from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig  # noqa: E402
from automtl.data.schema import Dataset  # noqa: E402


class LiveRows(list[tuple[str, str, str]]):
    """The table's rows, each also printed (stderr, flushed) the moment it exists: on the first
    H200 run, parts stopped by an outer `timeout` lost every row they had measured, because the
    table is printed only at the end."""

    def append(self, row: tuple[str, str, str]) -> None:
        super().append(row)
        print(f"  row | {row[0]} | {row[1]} | {row[2]}", file=sys.stderr, flush=True)


@dataclass
class Sizes:
    rows: int  # throughput / streaming data
    search_rows: int
    search_trials: int
    scale_rows: int  # trials-per-device data
    ks: tuple[int, ...]
    model_steps: int
    peer_steps: int  # timed batches of the torch-rechub peer
    models: tuple[str, ...]
    budget_s: float | None  # the whole check's time budget (None: no limit)
    step_batches: tuple[int, ...]  # batch sizes of the step part
    step_steps: int  # timed steps per batch size and variant
    compile_mode: str  # torch.compile mode of the compile part ("eager": dynamo only, CPU)
    parity_steps: int  # steps of the eager-vs-graph loss parity
    batch_size: int = 2048


FULL = Sizes(rows=1_000_000, search_rows=1_000_000, search_trials=20, scale_rows=200_000,
             ks=(1, 2, 4, 8), model_steps=20, peer_steps=100, models=("mmoe", "ple"),
             budget_s=420, step_batches=(2048, 8192, 32768, 65536, 262144), step_steps=20,
             compile_mode="default", parity_steps=8)
DRY = Sizes(rows=3_000, search_rows=3_000, search_trials=4, scale_rows=3_000, ks=(1, 2),
            model_steps=1, peer_steps=2, models=("mmoe",), budget_s=None, step_batches=(64, 256),
            step_steps=1, compile_mode="eager", parity_steps=4, batch_size=512)

# Seconds a part needs at full size on an H200 (estimates from the first H200 run, 2026-11-29);
# a part is skipped when less than this is left, and the search leaves this much to the parts
# after it.
MIN_S = {"throughput": 60, "steps": 30, "search": 60, "streaming": 25, "scaling": 50,
         "compile": 45}
OPTIONAL = {"compile"}  # runs only on time left over: earlier parts reserve nothing for it
# Python modules each part imports beyond torch/numpy (a bare GPU image lacks some: carry wheels)
NEEDS = {"throughput": ("torch_rechub", "sklearn"), "search": ("optuna", "sqlalchemy", "alembic"),
         "streaming": (), "scaling": (), "steps": (), "compile": ()}
PARTS = ("throughput", "steps", "search", "streaming", "scaling", "compile")
_PEAK: dict[str, float] = {}  # the bf16 matmul peak (GFLOP/s), once measured


@functools.cache
def synthetic(rows: int) -> Dataset:
    """The parts' synthetic Ali-CCP-schema data, generated once per size."""
    from automtl.data import load_dataset

    return load_dataset(DataConfig(name="synthetic", options={"rows": rows, "schema": "ali-ccp",
                                                             "n_tasks": 2}))


def bf16_peak(device: torch.device, dry: bool) -> float:
    if "bf16" not in _PEAK:
        _PEAK["bf16"] = throughput.matmul_peak(device, torch.bfloat16, tries=1 if dry else 5)
    return _PEAK["bf16"]


class Clock:
    """The check's time budget: what is left, and what the parts after the current one need."""

    def __init__(self, budget_s: float | None, parts: list[str]) -> None:
        self.end = None if budget_s is None else time.perf_counter() + budget_s
        self.parts = parts

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.perf_counter()

    def spare(self, part: str) -> float:
        """Seconds `part` may use so that every later part still gets its minimum."""
        later = self.parts[self.parts.index(part) + 1:]
        return self.left() - sum(MIN_S[p] for p in later if p not in OPTIONAL)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def missing_modules(parts: list[str]) -> list[str]:
    """The modules the chosen parts import that this Python cannot find."""
    names = sorted({m for p in parts for m in NEEDS[p]})
    return [m for m in names if importlib.util.find_spec(m) is None]


class Utilisation:
    """Mean GPU utilisation (nvidia-smi, every 0.5 s) or CPU % (psutil) while running."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._smi = shutil.which("nvidia-smi") if device.type == "cuda" else None
        self._t = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        if self.device.type != "cuda":
            import psutil

            return float(psutil.cpu_percent(interval=None))
        if self._smi is None:
            return None
        idx = str(self.device.index or 0)
        out = subprocess.run([self._smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,"
                              "nounits", "-i", idx], capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0]) if out.returncode == 0 else None

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            v = self._read()
            if v is not None:
                self.samples.append(v)

    def __enter__(self) -> Utilisation:
        self._read()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mean(self) -> str:
        unit = "GPU" if self.device.type == "cuda" else "CPU"
        if not self.samples:
            return f"{unit} util n/a"
        return f"{unit} util {sum(self.samples) / len(self.samples):.0f}%"


def small_trial(rows: int, device: str, seed: int) -> TrialConfig:
    """The small trial of the trials-per-device rows (a model too small to fill a GPU)."""
    model = ModelConfig(arch="mmoe", embedding_dim=8, n_experts=4, expert_dims=[64],
                        tower_dims=[32])
    return TrialConfig(data=DataConfig(name="synthetic", options={"rows": rows, "seed": 1}),
                       model=model, train=TrainConfig(epochs=1, batch_size=2048, device=device,
                                                      seed=seed))


def trial_job(cfg: TrialConfig) -> float:
    """One trial in a trial process (module level: spawned processes import it)."""
    from automtl.data import load_dataset
    from automtl.train import fit

    return float(fit(cfg, load_dataset(cfg.data)).val["mean_auc"])


def part_throughput(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]],
                    dry: bool, clock: Clock) -> None:
    ds = synthetic(sz.rows)
    peak = bf16_peak(device, dry)
    rows.append(("bf16 matmul peak (2048^3)", f"{peak:,.0f} GFLOP/s", "measured"))
    args = argparse.Namespace(epochs=1, batch_size=sz.batch_size, model_steps=sz.model_steps,
                              peer_steps=sz.peer_steps)
    has_peer = importlib.util.find_spec("torch_rechub") is not None
    for name in sz.models:
        got = {p: throughput.run_automtl(ds, name, args, device, p) for p in ("fp32", "bf16")}
        peer = None
        if has_peer:
            with contextlib.redirect_stdout(io.StringIO()):  # its per-epoch loss prints
                peer = throughput.run_rechub(ds, name, args, device)
        for p, r in got.items():
            ratio = f", {r.samples_per_s / peer.samples_per_s:.1f}x torch-rechub" if peer else ""
            frac = r.gflop_per_sample * r.samples_per_s / peak if p == "bf16" else None
            rows.append((f"{name} automtl {p} samples/s", f"{r.samples_per_s:,.0f}{ratio}",
                         (f"{frac:.1%} of bf16 peak; " if frac is not None else "")
                         + "target >= 20x peer, >= 50% peak (GPU)"))
        if peer is None:
            rows.append((f"{name} torch-rechub fp32 samples/s", "not measured",
                         "torch_rechub is not installed here (see the missing-packages line)"))
        else:
            rows.append((f"{name} torch-rechub fp32 samples/s", f"{peer.samples_per_s:,.0f}",
                         f"its MTLTrainer, model on {peer.ran_on}, {sz.peer_steps} timed batches"))
        d = {k: got["bf16"].test_auc[k] - got["fp32"].test_auc[k] for k in ("ctr", "ctcvr")}
        rows.append((f"{name} AUC bf16 - fp32 (test)", f"ctr {d['ctr']:+.4f}, ctcvr "
                     f"{d['ctcvr']:+.4f}", "parity: |delta| <= 0.002"))
        if name != sz.models[-1] and clock.spare("throughput") < 30:
            rows.append((f"throughput of {', '.join(sz.models[sz.models.index(name) + 1:])}",
                         "skipped", f"{clock.left():.0f} s left of the budget"))
            return


def part_streaming(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]],
                   clock: Clock) -> None:
    from automtl.data.transfer import CopyStats, copy_column
    from automtl.train import clear_device_cache, fit

    ds = synthetic(sz.rows)
    cfg = TrialConfig(model=throughput.model_config("mmoe"),
                      train=TrainConfig(epochs=1, batch_size=sz.batch_size, device=str(device),
                                        precision="bf16"))
    rate = {}
    for where in ("device", "host"):
        clear_device_cache()
        rate[where] = fit(cfg, ds, data_on=where).samples_per_s
    rows.append(("MMoE bf16 resident vs streamed", f"{rate['device']:,.0f} vs "
                 f"{rate['host']:,.0f} samples/s ({rate['host'] / rate['device']:.0%})",
                 "target streamed >= 90%"))
    # the chunked copy that makes a split resident (automtl.data.transfer), timed alone: on CUDA
    # pinned staging buffers; on CPU the same loop through unpinned ones
    clear_device_cache()
    split = ds.splits["train"]
    cols = [(split.sparse, torch.int32), (split.dense, torch.float32),
            (split.labels, torch.float32), *[(v, torch.int32) for v in split.sequences.values()]]
    stats = CopyStats()
    _sync(device)
    t0 = time.perf_counter()
    out = [copy_column(a, dt, device, chunk_rows=max(1, len(split) // 8), stage=True, stats=stats)
           for a, dt in cols]
    _sync(device)
    sec = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in out)
    same = all(torch.equal(t.cpu(), torch.from_numpy(a.astype(np.int32 if dt == torch.int32
                                                             else np.float32)))
               for t, (a, dt) in zip(out, cols))
    rows.append(("train split host->device copy (chunked)",
                 f"{nbytes / sec / 1e9:.2f} GB/s ({nbytes / 2**20:,.0f} MiB in {stats.chunks} "
                 f"chunks, {stats.staging_bytes / 2**20:,.1f} MiB staging)",
                 "values equal" if same else "VALUES DIFFER"))


def child_rows(args: list[str], rows: list[tuple[str, str, str]], part: str,
               seconds: float) -> None:
    """Run `step_scaling.py ARGS --row-lines` in a child process and append the rows it prints
    (a failed CUDA graph capture can leave a CUDA context unusable: the parts after it keep a
    clean one); the child is stopped after `seconds`, keeping the rows it printed."""
    cmd = [sys.executable, str(Path(__file__).with_name("step_scaling.py")), *args, "--row-lines",
           "--budget-s", f"{max(seconds - 10, 1):.0f}"]  # its own clock: ~10 s for start-up
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(seconds, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ROW\t"):
                check, value, note = (line.rstrip("\n").split("\t") + ["", "", ""])[1:4]
                rows.append((check, value, note))
        code = proc.wait()
    finally:
        timer.cancel()
    if code != 0:
        rows.append((part, f"stopped after {seconds:.0f} s" if code == -9 else
                     f"FAILED: exit code {code}", "its rows above are kept; see the log"))


def part_steps(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]], dry: bool,
               clock: Clock) -> None:
    """The MMoE step alone vs batch size, eager and CUDA-graph captured (`step_scaling.py`)."""
    peak = bf16_peak(device, dry)
    child_rows(["--device", str(device), "--batches", ",".join(map(str, sz.step_batches)),
                "--steps", str(sz.step_steps), "--rows", str(sz.rows), "--peak", f"{peak:.1f}",
                "--parity-steps", str(sz.parity_steps)], rows, "steps",
               min(clock.spare("steps"), 600))


def part_compile(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]], dry: bool,
                 clock: Clock) -> None:
    """The step with its forward compiled, at the largest batch size (`step_scaling.py`)."""
    peak = bf16_peak(device, dry)
    child_rows(["--device", str(device), "--batches", ",".join(map(str, sz.step_batches)),
                "--steps", str(sz.step_steps), "--rows", str(sz.rows), "--peak", f"{peak:.1f}",
                "--compile", sz.compile_mode, "--only-compile"], rows, "compile",
               min(clock.spare("compile"), 600))


def part_scaling(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]],
                 clock: Clock) -> None:
    from automtl.train.sharing import run_sharing_data

    base = None
    for k in sz.ks:
        if base is not None and clock.left() < 15:
            rows.append((f"trials per device K={k}", "skipped", f"{clock.left():.0f} s left"))
            continue
        cfgs = [small_trial(sz.scale_rows, str(device), seed=i) for i in range(k)]
        t0 = time.perf_counter()
        with Utilisation(device) as util:
            run_sharing_data(cfgs[0].data, str(device), [(trial_job, (c,)) for c in cfgs])
        per_hour = k / (time.perf_counter() - t0) * 3600
        base = base or per_hour
        rows.append((f"trials per device K={k}", f"{per_hour:,.0f} trials/h ({per_hour / base:.2f}x"
                     f" K=1), {util.mean}", "target K=8 >= 4x K=1 (GPU)" if k == 8 else
                     "one data copy shared"))


def part_search(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]],
                clock: Clock) -> None:
    import optuna

    from automtl._typed import from_dict
    from automtl.data import load_dataset
    from automtl.search.meta import TrialMeta
    from automtl.search.runner import run_search
    from automtl.search.study_config import study_preset
    from automtl.train import fit

    cfg = study_preset("synthetic")  # what `automtl search` runs by default
    cfg.name = "gpu-check"
    cfg.data.options["rows"] = sz.search_rows
    cfg.n_trials = sz.search_trials
    timeout = clock.spare("search") - 30  # 30 s for the export retraining at least
    cfg.timeout = None if timeout == float("inf") else max(30.0, timeout)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/gpu_check.db"
        t0 = time.perf_counter()
        with Utilisation(device) as util:
            res = run_search(cfg, storage=url, device=str(device))
        sec = time.perf_counter() - t0
        n = res.trials_run
        stopped = f"; stopped by its {cfg.timeout:.0f} s timeout" if (
            cfg.timeout and n < sz.search_trials) else ""
        rows.append((f"{sz.search_trials}-trial search, {sz.search_rows:,} rows",
                     f"{sec:.0f} s for {n} trials ({n / sec * 3600:,.0f} trials/h), {res.states}",
                     f"synthetic preset, budget {f'{cfg.budget.trainings:g}' if cfg.budget else '-'} "
                     f"trainings; {util.mean}{stopped}"))
        study = optuna.load_study(study_name="gpu-check", storage=url)
        done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
        if not done:
            rows.append(("export reproducibility", "no complete trial", ""))
            return
        best = max(done, key=lambda t: TrialMeta.read(t).val_metrics["mean_auc"])
        took = (best.datetime_complete - best.datetime_start).total_seconds()
        if took > clock.spare("search"):
            rows.append(("export reproducibility (val mean AUC)", "skipped",
                         f"trial {best.number} trained in {took:.0f} s; {clock.spare('search'):.0f}"
                         " s left for it"))
            return
        trial_cfg = from_dict(TrialConfig, TrialMeta.read(best).config)
        again = fit(trial_cfg, load_dataset(trial_cfg.data), device=str(device))
        stored = TrialMeta.read(best).val_metrics["mean_auc"]
        rows.append(("export reproducibility (val mean AUC)",
                     f"trial {best.number}: stored {stored:.5f}, retrained "
                     f"{again.val['mean_auc']:.5f} ({again.val['mean_auc'] - stored:+.5f})",
                     "bit-exact on CPU; GPU atomics may differ ~1e-4"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (CI)")
    ap.add_argument("--device", default=None, help="default cuda:0 (cpu with --dry-run)")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated, run in this order")
    ap.add_argument("--budget-s", type=float, default=None,
                    help=f"time budget of the whole check (default {FULL.budget_s:.0f} s; none "
                         "with --dry-run); parts that would not fit are skipped with a row")
    args = ap.parse_args(argv)
    from automtl.train import resolve_device

    sz = DRY if args.dry_run else FULL
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        print(f"gpu_check: --parts {args.parts!r}: use some of {', '.join(PARTS)}")
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU box, or pass --dry-run")
        return 2
    device = resolve_device(args.device or ("cpu" if args.dry_run else "cuda:0"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else throughput.machine()
    started = time.perf_counter()
    clock = Clock(args.budget_s if args.budget_s is not None else sz.budget_s, chosen)
    missing = missing_modules(chosen)
    if missing:
        print(f"gpu_check: this Python lacks {', '.join(missing)}: their rows will say so; run "
              "`bash benchmarks/gpu_check.sh --fetch-wheels` where pip reaches PyPI and carry "
              ".whl/ here (gpu_check.sh installs it)", file=sys.stderr, flush=True)
    rows = LiveRows()
    parts = {"throughput": lambda: part_throughput(sz, device, rows, args.dry_run, clock),
             "streaming": lambda: part_streaming(sz, device, rows, clock),
             "scaling": lambda: part_scaling(sz, device, rows, clock),
             "search": lambda: part_search(sz, device, rows, clock),
             "steps": lambda: part_steps(sz, device, rows, args.dry_run, clock),
             "compile": lambda: part_compile(sz, device, rows, args.dry_run, clock)}
    for part in chosen:
        t0 = time.perf_counter()
        lack = [m for m in NEEDS[part] if m in missing and m != "torch_rechub"]
        if lack:
            rows.append((part, "not run", f"{', '.join(lack)} not installed here"))
            continue
        if clock.left() < MIN_S[part]:
            rows.append((part, "skipped", f"{max(clock.left(), 0):.0f} s left of the budget, "
                         f"needs ~{MIN_S[part]} s (run it alone with --parts {part})"))
            continue
        try:
            parts[part]()
        except Exception as exc:  # one broken part must not hide the others
            rows.append((part, f"FAILED: {type(exc).__name__}: {str(exc)[:150]}", ""))
        print(f"  {part} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"gpu_check on {device} ({name}), torch {torch.__version__}, "
          f"{'dry run (tiny sizes)' if args.dry_run else 'full sizes'}, "
          f"{time.perf_counter() - started:.0f} s"
          + (f"; missing packages: {', '.join(missing)}" if missing else ""))
    print(f"{'check':{width}}  {'value':{vwidth}}  note")
    print("-" * (width + vwidth + 30))
    for check, value, note in rows:
        print(f"{check:{width}}  {value:{vwidth}}  {note}")
    return 1 if any(r[1].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
