"""The prepared GPU check (issue 14): one command, about 8 minutes on one modern GPU, ONE table.

    bash benchmarks/gpu_check.sh                 # on a GPU box (cuda:0)
    bash benchmarks/gpu_check.sh --dry-run       # tiny sizes on CPU (CI runs this)

Rows (each on the same device and data):
- MMoE / PLE training samples/s, automtl fp32 and bf16 vs torch-rechub 0.9 (fp32), the ratio,
  and the bf16 step's matmul FLOP rate as a % of the measured bf16 matmul peak;
- AUC parity: bf16 minus fp32 test AUC of the same model and seed;
- trials per device K = 1/2/4/8 (one data copy shared by K trial processes,
  `automtl.train.sharing`): trials/hour and mean GPU utilisation (nvidia-smi; CPU % on CPU);
- a 20-trial search (default space) on 1M synthetic rows: wall time and trials/hour;
- resident vs streamed (`--data-on host`) samples/s of the benchmark MMoE;
- export reproducibility: the search's best trial's stored val AUC vs retraining its exported
  config (`automtl train` semantics: `fit` of the stored TrialConfig).
Each part catches its own failure and prints it in its row, so one broken part does not hide
the others.
"""

from __future__ import annotations

import argparse
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

import torch  # noqa: E402

import throughput  # noqa: E402  (benchmarks/throughput.py: the models, peer and peak)
from automtl.config import DataConfig, ModelConfig, TrainConfig, TrialConfig  # noqa: E402


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
    search_epochs: int
    scale_rows: int  # trials-per-device data
    ks: tuple[int, ...]
    model_steps: int
    models: tuple[str, ...]
    batch_size: int = 2048


FULL = Sizes(rows=1_000_000, search_rows=1_000_000, search_trials=20, search_epochs=2,
             scale_rows=200_000, ks=(1, 2, 4, 8), model_steps=20, models=("mmoe", "ple"))
DRY = Sizes(rows=3_000, search_rows=3_000, search_trials=2, search_epochs=1, scale_rows=3_000,
            ks=(1, 2), model_steps=1, models=("mmoe",), batch_size=512)


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
                    dry: bool) -> None:
    from automtl.data import load_dataset

    ds = load_dataset(DataConfig(name="synthetic", options={"rows": sz.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    peak = throughput.matmul_peak(device, torch.bfloat16, tries=1 if dry else 5)
    rows.append(("bf16 matmul peak (2048^3)", f"{peak:,.0f} GFLOP/s", "measured"))
    args = argparse.Namespace(epochs=1, batch_size=sz.batch_size, model_steps=sz.model_steps)
    for name in sz.models:
        got = {p: throughput.run_automtl(ds, name, args, device, p) for p in ("fp32", "bf16")}
        try:
            peer: throughput.Row | None = throughput.run_rechub(ds, name, args, device)
        except ImportError:
            peer = None
        for p, r in got.items():
            ratio = f", {r.samples_per_s / peer.samples_per_s:.1f}x torch-rechub" if peer else ""
            frac = r.gflop_per_sample * r.samples_per_s / peak if p == "bf16" else None
            rows.append((f"{name} automtl {p} samples/s", f"{r.samples_per_s:,.0f}{ratio}",
                         (f"{frac:.1%} of bf16 peak; " if frac is not None else "")
                         + "target >= 20x peer, >= 50% peak (GPU)"))
        if peer is not None:
            rows.append((f"{name} torch-rechub fp32 samples/s", f"{peer.samples_per_s:,.0f}",
                         "same device and data"))
        d = {k: got["bf16"].test_auc[k] - got["fp32"].test_auc[k] for k in ("ctr", "ctcvr")}
        rows.append((f"{name} AUC bf16 - fp32 (test)", f"ctr {d['ctr']:+.4f}, ctcvr "
                     f"{d['ctcvr']:+.4f}", "parity: |delta| <= 0.002"))


def part_streaming(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]]) -> None:
    from automtl.data import load_dataset
    from automtl.train import clear_device_cache, fit

    ds = load_dataset(DataConfig(name="synthetic", options={"rows": sz.rows, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
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


def part_scaling(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]]) -> None:
    from automtl.train.sharing import run_sharing_data

    base = None
    for k in sz.ks:
        cfgs = [small_trial(sz.scale_rows, str(device), seed=i) for i in range(k)]
        t0 = time.perf_counter()
        with Utilisation(device) as util:
            run_sharing_data(cfgs[0].data, str(device), [(trial_job, (c,)) for c in cfgs])
        per_hour = k / (time.perf_counter() - t0) * 3600
        base = base or per_hour
        rows.append((f"trials per device K={k}", f"{per_hour:,.0f} trials/h ({per_hour / base:.2f}x"
                     f" K=1), {util.mean}", "target K=8 >= 4x K=1 (GPU)" if k == 8 else
                     "one data copy shared"))


def part_search(sz: Sizes, device: torch.device, rows: list[tuple[str, str, str]]) -> None:
    from automtl._typed import from_dict
    from automtl.data import load_dataset
    from automtl.search.runner import run_search
    from automtl.search.study_config import StudyConfig
    from automtl.train import fit

    with tempfile.TemporaryDirectory() as tmp:
        space = "default"
        if sz is DRY:  # the default space's largest models are minutes each on a CPU
            space = f"{tmp}/tiny.yaml"
            Path(space).write_text("name: tiny\nparams:\n  model.arch: {choices: [mmoe, ple]}\n"
                                   "  model.embedding_dim: 4\n  model.expert_dims: {choices: "
                                   "[[8]]}\n  model.n_experts: 2\n  model.tower_dims: "
                                   "{choices: [[4]]}\n")
        cfg = StudyConfig(name="gpu-check", data=DataConfig(name="synthetic",
                                                            options={"rows": sz.search_rows}),
                          space=space, epochs=sz.search_epochs, n_trials=sz.search_trials,
                          sampler="tpe")
        url = f"sqlite:///{tmp}/gpu_check.db"
        t0 = time.perf_counter()
        with Utilisation(device) as util:
            res = run_search(cfg, storage=url, device=str(device))
        sec = time.perf_counter() - t0
        rows.append((f"{sz.search_trials}-trial search, {sz.search_rows:,} rows",
                     f"{sec:.0f} s ({sz.search_trials / sec * 3600:,.0f} trials/h), "
                     f"{res.states}", util.mean))
        import optuna

        study = optuna.load_study(study_name="gpu-check", storage=url)
        done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
        if not done:
            rows.append(("export reproducibility", "no complete trial", ""))
            return
        from automtl.search.meta import TrialMeta

        best = max(done, key=lambda t: TrialMeta.read(t).val_metrics["mean_auc"])
        trial_cfg = from_dict(TrialConfig, TrialMeta.read(best).config)
        again = fit(trial_cfg, load_dataset(trial_cfg.data), device=str(device))
        stored = TrialMeta.read(best).val_metrics["mean_auc"]
        rows.append(("export reproducibility (val mean AUC)",
                     f"stored {stored:.5f}, retrained {again.val['mean_auc']:.5f} "
                     f"({again.val['mean_auc'] - stored:+.5f})",
                     "bit-exact on CPU; GPU atomics may differ ~1e-4"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (CI)")
    ap.add_argument("--device", default=None, help="default cuda:0 (cpu with --dry-run)")
    ap.add_argument("--parts", default="throughput,streaming,scaling,search")
    args = ap.parse_args(argv)
    from automtl.train import resolve_device

    sz = DRY if args.dry_run else FULL
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU box, or pass --dry-run")
        return 2
    device = resolve_device(args.device or ("cpu" if args.dry_run else "cuda:0"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else throughput.machine()
    started = time.perf_counter()
    rows = LiveRows()
    parts = {"throughput": lambda: part_throughput(sz, device, rows, args.dry_run),
             "streaming": lambda: part_streaming(sz, device, rows),
             "scaling": lambda: part_scaling(sz, device, rows),
             "search": lambda: part_search(sz, device, rows)}
    for part in args.parts.split(","):
        t0 = time.perf_counter()
        try:
            parts[part]()
        except Exception as exc:  # one broken part must not hide the others
            rows.append((part, f"FAILED: {type(exc).__name__}: {str(exc)[:150]}", ""))
        print(f"  {part} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"gpu_check on {device} ({name}), torch {torch.__version__}, "
          f"{'dry run (tiny sizes)' if args.dry_run else 'full sizes'}, "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'check':{width}}  {'value':{vwidth}}  note")
    print("-" * (width + vwidth + 30))
    for check, value, note in rows:
        print(f"{check:{width}}  {value:{vwidth}}  {note}")
    return 1 if any(r[1].startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
