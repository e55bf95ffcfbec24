"""What a foreign training stack cannot express of a `TrialConfig` (shared by the writers).

Each helper returns one short line per dropped or changed term; writers put them in a comment of
the exported file and the CLI prints them, so nothing disappears silently.
"""

from __future__ import annotations

from typing import Collection

from automtl.config import LossConfig, ModelConfig, TrainConfig
from automtl.errors import AutomtlError


def require_arch(model: ModelConfig, tool: str, supported: dict[str, str]) -> str:
    """The tool's class name for `model.arch`, or an `AutomtlError` naming what is missing."""
    if model.arch in supported:
        return supported[model.arch]
    have = ", ".join(supported.values())
    raise AutomtlError(
        f"--format {tool}: {tool} has no {model.arch!r} architecture (it has {have}); "
        "export this trial with --format yaml (automtl train) or onnx/torchscript instead")


# the cascade heads after ESMM (automtl/models/cascade_heads.py): no supported stack has them
_HEAD_TERMS = {
    "esm2": "ESM2's post-click decomposition (D-action / other-action paths and their products)",
    "escm2_ips": "ESCM2-IPS's counterfactual CVR risk (CVR loss weighted by 1 / predicted CTR)",
    "escm2_dr": "ESCM2-DR's doubly robust CVR risk and its imputation tower",
    "dcmt": "DCMT's counterfactual twin CVR tower, IPW losses and soft constraint",
}


def model_gaps(model: ModelConfig) -> list[str]:
    """Model terms no supported foreign stack has (task-specific bottoms, target attention,
    the ESM2 / ESCM2 / DCMT heads and their loss settings)."""
    out = []
    if model.head in _HEAD_TERMS:
        section = {"escm2_ips": " and loss.escm2", "escm2_dr": " and loss.escm2",
                   "dcmt": " and loss.dcmt"}.get(model.head, "")
        out.append(f"model.head={model.head} ({_HEAD_TERMS[model.head]}){section}: no "
                   "equivalent, each task is predicted directly")
    if model.bottom != "shared":
        out.append(f"model.bottom={model.bottom}: the task-specific bottom is dropped; the "
                   "model reads the plain concatenation of feature embeddings")
    if model.seq_pooling != "mean":
        out.append(f"model.seq_pooling={model.seq_pooling}: sequences are mean-pooled instead")
    if model.wide:
        out.append("model.wide: the first-order (wide) term is dropped")
    if model.deepmcp is not None:
        out.append("model.deepmcp: DeepMCP's matching / correlation subnets (auxiliary loss "
                   "terms on the embeddings) are dropped; the prediction model trains alone")
    if model.shallow_tower is not None:
        out.append("model.shallow_tower: the shallow bias tower is dropped; its bias fields "
                   "become ordinary inputs of the main model")
    return out


def loss_gaps(loss: LossConfig, weighting: Collection[str]) -> list[str]:
    """Loss terms beyond per-task BCE, and task-weighting schemes outside `weighting`."""
    out = []
    if loss.pwiser is not None:
        p = loss.pwiser
        out.append(f"loss.pwiser (PWiseR ranking term, lam={p.lam:g}, m1={p.m1:g}, m2={p.m2:g})")
    if loss.dependency is not None:
        out.append(f"loss.dependency (APEM sequential-dependence term, tau={loss.dependency.tau})")
    if loss.calibrator is not None:
        out.append(f"loss.calibrator (AITM calibrator, alpha={loss.calibrator.alpha:g})")
    w = loss.weighting
    uneven = any(abs(v - 1.0) > 1e-12 for v in w.weights.values())
    if w.scheme == "conditioned":
        served = f" (served at {w.preference})" if w.preference else ""
        out.append("loss.weighting.scheme=conditioned: preference-conditioned training (FiLM "
                   f"layers fed a task-weight vector{served}) cannot be expressed there; tasks "
                   "are weighted equally and the model has no FiLM layers (use yaml, onnx or "
                   "torchscript to keep it)")
    elif w.scheme not in weighting:
        out.append(f"loss.weighting.scheme={w.scheme}: tasks are weighted equally instead")
    elif w.scheme == "fixed" and uneven:
        out.append(f"loss.weighting.weights={w.weights}: tasks are weighted equally instead")
    return out


def train_gaps(train: TrainConfig, *, grad_clip: bool) -> list[str]:
    """Training settings a stack cannot take (gradient clipping when `grad_clip` is False)."""
    out = []
    if train.optimizer == "clippy":
        out.append(f"train.optimizer=clippy: plain Adagrad (lr={train.lr:g}) without Clippy's "
                   f"update clipping (lambda_rel={train.clippy_rel:g}, "
                   f"lambda_abs={train.clippy_abs:g})")
    if train.grad_clip is not None and not grad_clip:
        out.append(f"train.grad_clip={train.grad_clip:g}: no gradient clipping")
    if train.optimizer.startswith("lazy_"):
        out.append(f"train.optimizer={train.optimizer}: embedding tables get the dense "
                   f"{train.optimizer[5:]} (no row-wise update)")
    return out


def require_dims(model: ModelConfig, key: str, tool: str, cls: str) -> list[int]:
    """`model.<key>` when it has at least one layer, else an `AutomtlError` (the tool's `cls`
    needs one: its towers take that layer's width)."""
    dims = list(getattr(model, key))
    if not dims:
        raise AutomtlError(f"--format {tool}: {tool}'s {cls} needs at least one layer in "
                           f"model.{key}, which is empty for this trial; export it with "
                           "--format yaml (automtl train) or onnx/torchscript instead")
    return dims
