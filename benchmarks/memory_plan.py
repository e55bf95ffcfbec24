"""The device-memory plan at full Ali-CCP size, without building the data: split sizes of an
85M-row cache of the Ali-CCP schema (42.3M train, 4.2M val taken from it, 43M test; device bytes
per row from the schema: int32 ids and sequences, float32 dense and labels), the benchmark MMoE's
estimate (its embedding table sized by the synthetic ali-ccp schema's vocabularies), and device
budgets of 24 GB and 80 GB. Prints the plan line of each (what `fit` would log).

    python benchmarks/memory_plan.py [--rows-train 38070000 --rows-val 4230000 --rows-test 43000000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import throughput  # noqa: E402
from automtl.config import DataConfig  # noqa: E402
from automtl.data import load_dataset  # noqa: E402
from automtl.errors import DataError  # noqa: E402
from automtl.models import build_model  # noqa: E402
from automtl.train.memory import (  # noqa: E402
    STAGING_BATCHES,
    estimate_model_bytes,
    plan_memory,
    row_bytes,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows-train", type=int, default=38_070_000)
    ap.add_argument("--rows-val", type=int, default=4_230_000)
    ap.add_argument("--rows-test", type=int, default=43_000_000)
    ap.add_argument("--budgets", default="24G,80G")
    args = ap.parse_args(argv)
    ds = load_dataset(DataConfig(name="synthetic", options={"rows": 5000, "schema": "ali-ccp",
                                                           "n_tasks": 2}))
    per_row = row_bytes(ds.splits["train"])
    sizes = {"train": args.rows_train * per_row, "val": args.rows_val * per_row,
             "test": args.rows_test * per_row}
    model = build_model(throughput.model_config("mmoe"), ds.features, ds.tasks)
    first = ds.splits["train"]
    elements = first.sparse.shape[1] + sum(v.shape[1] for v in first.sequences.values())
    est = estimate_model_bytes(model, 2048, 16384, elements)
    print(f"{per_row} device bytes per row; {sum(sizes.values()) / 2**30:.1f} GiB in all; "
          f"benchmark MMoE estimate {est / 2**20:.0f} MiB")
    from automtl.train.memory import parse_bytes

    for b in args.budgets.split(","):
        budget = parse_bytes(b, "--budgets")
        try:
            plan = plan_memory(sizes, est, budget, device=f"a {b} GPU",
                               file_backed={s: True for s in sizes},
                               staging_bytes=STAGING_BATCHES * per_row * 16384)
            print(plan.line())
        except DataError as exc:
            print(f"{b}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
