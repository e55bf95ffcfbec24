"""Trained models as ONNX or TorchScript files for serving.

Both take plain tensors instead of automtl's `Batch`: inputs ``sparse`` (int32 ``[B, n_sparse]``),
``dense`` (float32 ``[B, n_dense]``) and one int32 ``[B, max_len]`` input per sequence field (named
after the field, 0 = padding), each present only when the dataset has such fields. Outputs: one
float32 ``[B]`` tensor per task, named after the task, holding the unconditional probability
p(task = 1 | x) (sigmoid of the model's logit). The input/output layout and the trial config are
stored in the file (ONNX metadata ``automtl.*``; TorchScript extra file ``automtl.json``).

A preference-conditioned model (`automtl.models.film`) is exported at its serving task-weight
vector (``loss.weighting.preference``, baked in as a constant), or, with ``weights_input``, takes
one more input ``task_weights`` (float32 ``[B, T]``, rows on the simplex, tasks in output order)
so the operating point can move at serving time.

Training-only parts are not exported (`MTLModel.for_serving`): DeepMCP's subnets and the shallow
bias tower (`model.shallow_tower`, whose bias columns, e.g. the position, keep their place in the
``sparse`` input but are read by nothing).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from automtl.data.batching import Batch
from automtl.data.schema import FeatureSpec, Split, TaskSpec
from automtl.errors import AutomtlError
from automtl.models.film import set_preference

WEIGHTS_INPUT = "task_weights"


def input_names(features: Sequence[FeatureSpec]) -> list[str]:
    """Names of the exported model's inputs, in call order."""
    names = []
    if any(f.kind == "sparse" for f in features):
        names.append("sparse")
    if any(f.kind == "dense" for f in features):
        names.append("dense")
    names += [f.name for f in features if f.kind == "sequence"]
    if len(set(names)) != len(names):
        raise AutomtlError("a sequence field is named 'sparse' or 'dense', which clashes with the "
                           "exported model's input names; rename the field")
    return names


class TensorModel(nn.Module):
    """An automtl model called with tensors (see module docstring), returning task probabilities."""

    def __init__(self, model: nn.Module, features: Sequence[FeatureSpec],
                 weights_input: bool = False) -> None:
        super().__init__()
        # training-only parts (the shallow bias tower, DeepMCP's subnets) are not served
        self.model = model.for_serving() if hasattr(model, "for_serving") else model
        self.weights_input = weights_input
        self.task_names: list[str] = list(model.task_names)  # type: ignore[arg-type]
        self.n_sparse = sum(f.kind == "sparse" for f in features)
        self.n_dense = sum(f.kind == "dense" for f in features)
        self.seq_names = [f.name for f in features if f.kind == "sequence"]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        it = iter(inputs)
        first = inputs[0]
        rows = first.shape[0]
        sparse = next(it) if self.n_sparse else first.new_zeros((rows, 0), dtype=torch.int32)
        dense = next(it) if self.n_dense else first.new_zeros((rows, 0), dtype=torch.float32)
        sequences = {name: next(it) for name in self.seq_names}
        labels = dense.new_zeros((rows, 0))  # models never read labels
        if self.weights_input:
            set_preference(self.model, next(it).float())
        try:
            out = self.model(Batch(sparse=sparse, dense=dense, sequences=sequences,
                                   labels=labels))
        finally:
            if self.weights_input:
                set_preference(self.model, None)
        return tuple(torch.sigmoid(out[name].float()) for name in self.task_names)


def example_inputs(split: Split, features: Sequence[FeatureSpec], rows: int = 64,
                   start: int = 0) -> tuple[Tensor, ...]:
    """Rows ``[start, start + rows)`` of a split as the exported model's input tensors."""
    sl = slice(start, start + rows)
    out: list[Tensor] = []
    if any(f.kind == "sparse" for f in features):
        out.append(torch.as_tensor(split.sparse[sl], dtype=torch.int32))
    if any(f.kind == "dense" for f in features):
        out.append(torch.as_tensor(split.dense[sl], dtype=torch.float32))
    out += [torch.as_tensor(split.sequences[f.name][sl], dtype=torch.int32)
            for f in features if f.kind == "sequence"]
    return tuple(out)


def _metadata(features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec],
              extra: dict[str, Any] | None) -> dict[str, str]:
    meta = {
        "automtl.inputs": json.dumps(input_names(features)),
        "automtl.outputs": json.dumps([t.name for t in tasks]),
        "automtl.sparse_fields": json.dumps([f.name for f in features if f.kind == "sparse"]),
        "automtl.dense_fields": json.dumps([f.name for f in features if f.kind == "dense"]),
        "automtl.sequence_fields": json.dumps(
            {f.name: f.max_len for f in features if f.kind == "sequence"}),
    }
    for k, v in (extra or {}).items():
        meta[f"automtl.{k}"] = v if isinstance(v, str) else json.dumps(v)
    return meta


def _expm1_symbolic(g: Any, x: Any) -> Any:
    """ONNX has no Expm1: 2 tanh(x/2) / (1 - tanh(x/2)) keeps full precision near 0 (where the
    ESMM head's log1mexp needs it), exp(x) - 1 is used for |x| >= 0.5."""
    def const(v: float) -> Any:
        return g.op("Constant", value_t=torch.tensor(v, dtype=torch.float32))

    t = g.op("Tanh", g.op("Mul", x, const(0.5)))
    near_zero = g.op("Div", g.op("Mul", t, const(2.0)), g.op("Sub", const(1.0), t))
    far = g.op("Sub", g.op("Exp", x), const(1.0))
    return g.op("Where", g.op("Less", g.op("Abs", x), const(0.5)), near_zero, far)


def export_onnx(model: nn.Module, features: Sequence[FeatureSpec], tasks: Sequence[TaskSpec],
                example: Sequence[Tensor], path: str | Path,
                metadata: dict[str, Any] | None = None, opset: int = 17,
                weights_input: bool = False) -> Path:
    """Write `model` (on CPU, eval mode) as ONNX with a dynamic batch axis; returns the path.
    `weights_input`: `example` ends with a task-weight tensor, exposed as input `task_weights`."""
    import onnx  # the "export" extra

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    wrapped = TensorModel(model, features, weights_input).cpu().eval()
    names = input_names(features) + ([WEIGHTS_INPUT] if weights_input else [])
    outputs = [t.name for t in tasks]
    axes = {n: {0: "batch"} for n in names + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter handles these graphs without onnxscript; torch warns
        # that it is the legacy path.
        warnings.simplefilter("ignore")
        torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1_symbolic, opset)
        torch.onnx.export(wrapped, tuple(example), str(p), dynamo=False, input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=opset)
    proto = onnx.load(str(p))
    for k, v in _metadata(features, tasks, metadata).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(p))
    return p


def export_torchscript(model: nn.Module, features: Sequence[FeatureSpec],
                       tasks: Sequence[TaskSpec], example: Sequence[Tensor], path: str | Path,
                       metadata: dict[str, Any] | None = None,
                       weights_input: bool = False) -> Path:
    """Write `model` (on CPU, eval mode) as a traced TorchScript module; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    wrapped = TensorModel(model, features, weights_input).cpu().eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        traced = torch.jit.trace(wrapped, tuple(example), check_trace=False)
        extra = {"automtl.json": json.dumps(_metadata(features, tasks, metadata))}
        torch.jit.save(traced, str(p), _extra_files=extra)
    return p


__all__ = ["TensorModel", "WEIGHTS_INPUT", "example_inputs", "export_onnx", "export_torchscript", "input_names"]
