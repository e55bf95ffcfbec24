"""Registration of the built-in datasets (imported by `automtl.data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automtl.data.registry import DatasetInfo, register_dataset
from automtl.data.schema import Dataset
from automtl.data.synthetic import generate_synthetic


def _load_synthetic(_: Path | None, opts: dict[str, Any]) -> Dataset:
    return generate_synthetic(**opts)


register_dataset(DatasetInfo(
    name="synthetic",
    description="generated click->purchase (or click->cart->purchase) cascade with known truth",
    tasks=("ctr", "ctcvr (cvr)"),
    source="generated in memory (deterministic from seed)",
    loader=_load_synthetic,
    options={"rows": 200_000, "n_tasks": 2, "rho": 0.5, "seed": 0, "schema": "default"},
    needs_files=False,
))
