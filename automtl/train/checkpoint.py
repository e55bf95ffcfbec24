"""Saving a trained trial (weights + config) and loading it back.

A trial folder holds `config.yaml` (the `TrialConfig`, enough to rebuild the model) and
`model.pt` (the best-epoch `state_dict`), loaded with `torch.load(..., weights_only=True)` so a
checkpoint can never run code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from automtl.config import TrialConfig, load_trial_config, save_trial_config
from automtl.data.schema import Dataset
from automtl.errors import AutomtlError

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pt"


def save_trained(out_dir: str | Path, cfg: TrialConfig, model: nn.Module) -> Path:
    """Write `config.yaml` and `model.pt` (CPU tensors) into `out_dir`; returns the folder."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_trial_config(cfg, out / CONFIG_FILE)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, out / WEIGHTS_FILE)
    except OSError as exc:
        raise AutomtlError(f"{out}: cannot write the trained model ({exc.strerror}); "
                           "choose another --out folder") from None
    return out


def load_trained(
    out_dir: str | Path, dataset: Dataset | None = None, device: str | torch.device = "cpu"
) -> tuple[TrialConfig, nn.Module]:
    """Rebuild the model saved in `out_dir` (dataset = the config's dataset unless given)."""
    from automtl.data import load_dataset
    from automtl.models import build_model

    folder = Path(out_dir)
    weights = folder / WEIGHTS_FILE
    cfg = load_trial_config(folder / CONFIG_FILE)
    if not weights.is_file():
        raise AutomtlError(f"{weights}: file not found; train with --out {folder} first")
    data = dataset if dataset is not None else load_dataset(cfg.data)
    model = build_model(cfg.model, data.features, data.tasks, cfg.loss.weighting)
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise AutomtlError(f"{weights}: cannot load weights ({first}); "
                           "the file does not match config.yaml") from None
    return cfg, model.to(device).eval()
