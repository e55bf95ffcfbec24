"""Preference conditioning: FiLM layers that let a task-weight vector r modulate a model.

YOTO (Dosovitskiy & Djolonga, "You Only Train Once: Loss-Conditional Training of Deep Networks",
ICLR 2020), sec. 3: the network receives the loss-weight vector as an extra input through
feature-wise linear modulation (FiLM, Perez et al., AAAI 2018): a small MLP maps r to a scale
sigma(r) and a shift mu(r) per channel, and a conditioned activation f becomes sigma * f + mu.
COSMOS (Ruchte & Grabocka, ICDM 2021) conditions on r by concatenating it to the input
features (its method section; the loss is its eq. (5)); Pareto HyperNetworks (Navon et al., ICLR 2021) and Controllable Pareto MTL
(Lin et al., 2020) generate (part of) the weights from r with a hypernetwork. FiLM sits between
the two: a per-channel affine map generated from r at chosen places, cheap enough to put on every
architecture.

Choices (where the papers leave it open):

- sigma = 1 + gamma(r), mu = beta(r) with the generator's last layer initialised to zero, so a
  freshly built (or zeroed) conditioned network computes exactly the unconditioned one.
- Generator: Linear(T, `film_hidden`) -> ReLU -> Linear(hidden, 2 * size), one per site.
- Sites (`loss.weighting.film`, any subset). Where r can make a difference: under linear
  scalarisation a per-task module (a tower, a task's gate) only reaches its own loss r_k L_k,
  whose minimiser does not depend on r (r_k > 0 only scales it), so FiLM there alone cannot learn
  a trade-off (the curve comes out flat: benchmarks/RESULTS.md, issue 16); the trade-off lives in
  what the tasks share. Hence the default ``bottom`` (COSMOS's choice too: r enters at the
  input), with ``experts`` as the other shared site; ``towers``/``gates`` add per-task capacity
  and matter with the cosine term, which couples the tasks.
  ``towers``  the input of every `Towers` block, one (sigma, mu) per task and channel (a shared
              input becomes per-task rows);
  ``experts`` the output of every expert bank (a module attribute named ``experts``), one
              (sigma, mu) per expert and channel (MMoE, PLE);
  ``gates``   the logits of every softmax gate, per gate and choice: r re-weights the experts;
  ``bottom``  the body's input (the bottom's output), per channel: conditions everything
              (the default; every architecture has it).
  Sites the architecture lacks are skipped (so one search space can offer [towers, experts]
  to every arch); none of them present is a one-line `ConfigError` suggesting ``bottom``.
- r is set on the conditioner before the forward pass (`set_preference`): ``[T]`` (one vector
  for the batch) or ``[B, T]`` (one per row); without one the `serve` buffer is used (the
  config's serving vector, uniform by default), which is what an exported model bakes in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from automtl.config import WeightingConfig, direction
from automtl.errors import ConfigError


class FiLMGenerator(nn.Module):
    """r ``[P, T]`` -> (sigma, mu), each ``[P, *shape]``; zero at initialisation (identity)."""

    def __init__(self, n_tasks: int, shape: Sequence[int], hidden: int) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        size = 1
        for s in self.shape:
            size *= s
        self.net = nn.Sequential(nn.Linear(n_tasks, hidden), nn.ReLU(), nn.Linear(hidden, 2 * size))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, pref: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(pref).view(pref.shape[0], 2, *self.shape)
        return 1.0 + out[:, 0], out[:, 1]


def _per_rows(param: Tensor, rows: int) -> Tensor:
    """``[P, n, D]`` -> ``[n, rows or 1, D]``; P = 1 broadcasts, P = B (per row) is repeated when
    the rows are task-major copies of the batch (T*B rows of a per-task input)."""
    p = param.shape[0]
    x = param.transpose(0, 1)  # [n, P, D]
    if p == 1 or p == rows:
        return x
    if rows % p == 0:
        return x.repeat(1, rows // p, 1)
    raise ValueError(f"preference has {p} rows but the conditioned input has {rows}")


class PreferenceConditioner(nn.Module):
    """FiLM generators attached (by forward hooks) to the `film` sites of an `MTLModel` body."""

    def __init__(self, body: nn.Module, n_tasks: int, cfg: WeightingConfig,
                 task_names: Sequence[str]) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.sites = list(cfg.film)
        serve = torch.full((n_tasks,), 1.0 / n_tasks)
        if cfg.preference:
            serve = preference_vector(cfg.preference, task_names)
        # not in the state dict: the serving vector always comes from the config
        self.register_buffer("serve", serve, persistent=False)
        self.pref: Tensor | None = None
        self.generators = nn.ModuleDict()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._attach(body, cfg.film_hidden)

    # -- the preference ----------------------------------------------------------------------

    def set_preference(self, pref: Tensor | None) -> None:
        """Condition the next forward passes on `pref` (``[T]`` or ``[B, T]``); None = `serve`."""
        self.pref = pref

    def current(self, device: torch.device) -> Tensor:
        """The preference as ``[P, T]`` float32 on `device`."""
        pref = self.pref if self.pref is not None else self.serve
        pref = pref.to(device=device, dtype=torch.float32)
        return pref.unsqueeze(0) if pref.dim() == 1 else pref

    # -- hooks -------------------------------------------------------------------------------

    def _add(self, name: str, shape: Sequence[int], hidden: int) -> FiLMGenerator:
        key = name.replace(".", "__")
        gen = FiLMGenerator(self.n_tasks, shape, hidden)
        self.generators[key] = gen
        return gen

    def _attach(self, body: nn.Module, hidden: int) -> None:
        from automtl.models.blocks import SoftmaxGates, StackedMLP, Towers

        found: dict[str, int] = {s: 0 for s in self.sites}
        if "bottom" in self.sites:
            gen = self._add("bottom", (body.in_dim,), hidden)
            self._handles.append(body.register_forward_pre_hook(self._bottom_hook(gen)))
            found["bottom"] += 1
        for name, mod in body.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if "towers" in self.sites and isinstance(mod, Towers):
                first = mod.net.net[0]
                gen = self._add(f"towers.{name}", (first.n, first.in_dim), hidden)
                self._handles.append(mod.register_forward_pre_hook(self._tower_hook(gen)))
                found["towers"] += 1
            elif "experts" in self.sites and isinstance(mod, StackedMLP) and leaf == "experts":
                gen = self._add(f"experts.{name}", (mod.n, mod.out_dim), hidden)
                self._handles.append(mod.register_forward_hook(self._stacked_out_hook(gen)))
                found["experts"] += 1
            elif "gates" in self.sites and isinstance(mod, SoftmaxGates):
                proj = mod.proj
                gen = self._add(f"gates.{name}", (proj.n, proj.out_dim), hidden)
                self._handles.append(proj.register_forward_hook(self._stacked_out_hook(gen)))
                found["gates"] += 1
        self.sites = [s for s, n in found.items() if n > 0]
        if not self.sites:
            arch = getattr(getattr(body, "cfg", None), "arch", type(body).__name__)
            raise ConfigError(f"loss.weighting.film: arch {arch} has no "
                              f"{' or '.join(found)} to condition; use film: [bottom] (works "
                              "with every arch) or [towers]")

    def _bottom_hook(self, gen: FiLMGenerator):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple) -> tuple:
            from automtl.models.base import as_input

            x = as_input(args[0], module.n_tasks)  # [B, D] or [T, B, D]
            sigma, mu = gen(self.current(x.device))  # [P, D]
            rows = x.shape[-2]
            if sigma.shape[0] not in (1, rows):
                raise ValueError(f"preference has {sigma.shape[0]} rows, input {rows}")
            return (x * sigma.to(x.dtype) + mu.to(x.dtype),) + tuple(args[1:])
        return hook

    def _tower_hook(self, gen: FiLMGenerator):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0]  # [B, D] (shared) or [T, B, D]
            sigma, mu = gen(self.current(x.device))  # [P, T, D]
            rows = x.shape[-2]
            s, m = _per_rows(sigma, rows).to(x.dtype), _per_rows(mu, rows).to(x.dtype)
            xt = x.unsqueeze(0) if x.dim() == 2 else x
            return (xt * s + m,) + tuple(args[1:])
        return hook

    def _stacked_out_hook(self, gen: FiLMGenerator):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: tuple, out: Tensor) -> Tensor:
            sigma, mu = gen(self.current(out.device))  # [P, n, D]
            rows = out.shape[1]
            return out * _per_rows(sigma, rows).to(out.dtype) + _per_rows(mu, rows).to(out.dtype)
        return hook


def preference_vector(weights: dict[str, float], task_names: Sequence[str]) -> Tensor:
    """A task-weight mapping as a vector ``[T]`` on the simplex (missing tasks weigh 0)."""
    unknown = [k for k in weights if k not in task_names]
    if unknown:
        raise ConfigError(f"loss.weighting.preference.{unknown[0]}: unknown task "
                          f"(tasks: {', '.join(task_names)})")
    values = [float(weights.get(t, 0.0)) for t in task_names]
    top = max(values, default=0.0)
    if not top > 0:
        raise ConfigError(f"loss.weighting.preference: weights must have a positive sum, got "
                          f"{weights}")
    return torch.tensor(direction(values))  # float64 math: huge weights stay a direction


def conditioner_of(model: nn.Module) -> PreferenceConditioner | None:
    """The model's `PreferenceConditioner`, None for an unconditioned model."""
    cond = getattr(model, "conditioning", None)
    return cond if isinstance(cond, PreferenceConditioner) else None


def set_preference(model: nn.Module, pref: Tensor | None) -> None:
    """Condition `model` on `pref` (no-op for an unconditioned model)."""
    cond = conditioner_of(model)
    if cond is not None:
        cond.set_preference(pref)


__all__ = ["FiLMGenerator", "PreferenceConditioner", "conditioner_of", "preference_vector",
           "set_preference"]
