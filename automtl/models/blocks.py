"""Shared building blocks of every automtl model: MLPs, stacked (batched) MLPs, gates, towers.

A *stacked* MLP holds `n` independent MLPs of the same shape as 3-D weights ``[n, in, out]`` and
evaluates all of them with one batched matmul per layer (experts of MMoE/PLE, per-task towers,
per-task gates), instead of a Python loop over members. Shapes follow one convention:

- a *shared* input is ``[B, D]`` (every member sees the same rows);
- a *per-member* input is ``[n, B, D]`` (member i sees its own rows);
- outputs are always ``[n, B, out]`` (views; `torch.matmul`/`bmm` accept the strided layouts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    """A fresh activation module by config name (relu | gelu | silu)."""
    return _ACTIVATIONS[name]()


def mlp(in_dim: int, dims: Sequence[int], act: str = "relu", dropout: float = 0.0) -> nn.Sequential:
    """Plain MLP: (Linear -> activation -> dropout) per entry of `dims`; any leading dims."""
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Linear(in_dim, d), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = d
    return nn.Sequential(*layers)


class StackedLinear(nn.Module):
    """`n` independent linear maps ``in -> out``: ``weight [n, in, out]``, ``bias [n, 1, out]``.

    forward: ``[B, in]`` (shared) or ``[n, B, in]`` (per member) -> ``[n, B, out]``, one matmul.
    Initialised like `nn.Linear` (uniform ±1/sqrt(in)) member by member.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            if not x.is_contiguous() and torch.is_autocast_enabled(x.device.type):
                # bf16 GEMMs (oneDNN) copy a strided operand transposed in backward, which is
                # slow; one contiguous copy here is cheaper (measured on CPU)
                x = x.contiguous()
            return torch.baddbmm(self.bias, x, self.weight)
        # Shared input: ONE GEMM against all members' weights side by side ([in, n*out], bias
        # fused by addmm), returned as a member-major VIEW [n, B, out] of the row-major
        # [B, n*out] result. Broadcasting matmul(x, weight) instead materialises a transposed
        # copy of the output in forward and of its gradient in backward (measured: ~15% of an
        # MMoE step on CPU); downstream ops (activations, baddbmm, bmm) accept the strided view.
        n, i, o = self.weight.shape
        w = self.weight.permute(1, 0, 2).reshape(i, n * o)
        y = torch.addmm(self.bias.reshape(1, n * o), x, w)
        return y.view(x.shape[0], n, o).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"n={self.n}, in_dim={self.in_dim}, out_dim={self.out_dim}"


class StackedMLP(nn.Module):
    """`n` independent MLPs of identical shape evaluated as one batched op per layer.

    Hidden layers `dims` use `act` (+ dropout); if `out_dim` is given a final linear layer without
    activation follows (towers: ``out_dim=1``).
    forward: ``[B, in]`` or ``[n, B, in]`` -> ``[n, B, out]``.
    """

    def __init__(
        self,
        n: int,
        in_dim: int,
        dims: Sequence[int],
        act: str = "relu",
        dropout: float = 0.0,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.n = n
        layers: list[nn.Module] = []
        d_in = in_dim
        for d in dims:
            layers += [StackedLinear(n, d_in, d), activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d_in = d
        if out_dim is not None:
            layers.append(StackedLinear(n, d_in, out_dim))
            d_in = out_dim
        if not layers:
            raise ValueError("StackedMLP needs at least one layer")
        self.net = nn.Sequential(*layers)
        self.out_dim = d_in

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def last_linear_parameters(self) -> list[nn.Parameter]:
        """Weight and bias of the last stacked linear layer."""
        last = [m for m in self.net if isinstance(m, StackedLinear)][-1]
        return [last.weight, last.bias]


class SoftmaxGates(nn.Module):
    """`n` softmax gates over `n_choices` experts: g = softmax(W x + b) (the MMoE/PLE gate).

    forward: ``[B, D]`` or ``[n, B, D]`` -> ``[n, B, n_choices]``, rows sum to 1.
    """

    def __init__(self, n: int, in_dim: int, n_choices: int) -> None:
        super().__init__()
        self.proj = StackedLinear(n, in_dim, n_choices)

    def forward(self, x: Tensor) -> Tensor:
        return torch.softmax(self.proj(x), dim=-1)


def mix_experts(gates: Tensor, experts: Tensor) -> Tensor:
    """Gate-weighted sum of expert outputs: out[t, b] = sum_e gates[t, b, e] * experts[e, b].

    gates ``[T, B, E]``; experts ``[E, B, H]`` -> ``[T, B, H]``. One `bmm` batched over rows (each
    row a tiny [T, E] x [E, H] product); measured faster than einsum/broadcast on CPU.
    """
    return torch.bmm(gates.transpose(0, 1), experts.transpose(0, 1)).transpose(0, 1)


def scatter_gates(gates: Tensor, columns: Tensor, n_experts: int) -> Tensor:
    """Gates over a subset of experts placed into a zero-padded ``[T, B, n_experts]`` matrix.

    gates ``[T, B, m]`` (task t's weights over its m experts); columns ``[T, m]`` (their indices in
    the full bank). The result goes to `mix_experts` with the whole bank (PLE, MFH): one `bmm`
    instead of a gather of each task's experts.
    """
    t, b, m = gates.shape
    return gates.new_zeros(t, b, n_experts).scatter(2, columns.unsqueeze(1).expand(t, b, m), gates)


class Towers(nn.Module):
    """One MLP tower per task ending in a logit: ``[B, D]`` or ``[T, B, D]`` -> ``[T, B]``.

    With ``logit=False`` the towers stop at their last hidden layer, ``[T, B, dims[-1]]`` (for
    bodies that link towers before the logit, e.g. DBMTL).
    """

    def __init__(
        self,
        n_tasks: int,
        in_dim: int,
        dims: Sequence[int],
        act: str = "relu",
        dropout: float = 0.0,
        logit: bool = True,
    ) -> None:
        super().__init__()
        self.logit = logit
        self.net = StackedMLP(n_tasks, in_dim, dims, act, dropout, out_dim=1 if logit else None)
        self.out_dim = self.net.out_dim

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        return y.squeeze(-1) if self.logit else y


__all__ = [
    "scatter_gates",
    "SoftmaxGates",
    "StackedLinear",
    "StackedMLP",
    "Towers",
    "activation",
    "mix_experts",
    "mlp",
]
