"""Synthetic multi-task recommendation data with known true probabilities.

Task relatedness follows the MMoE paper's synthetic construction (Ma et al., "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018, sec. 4.2):
two unit vectors ``w_a, w_b`` with ``cos(w_a, w_b) = rho`` read a shared latent ``z(x)`` and a
sinusoidal non-linearity is added, ``y_k = w_k.z + sum_i sin(alpha_i w_k.z + beta_i)``. Here the
``y_k`` are standardised, scaled and shifted into logits of binary cascade steps:

    p(click | x) = sigmoid(l_1),  p(step k | step k-1, x) = sigmoid(l_k),
    truth[:, k] = prod_{j <= k} p(step j | step j-1, x)        (unconditional p(task k))

Labels are drawn along the cascade (no purchase without click), so ``truth`` is exactly
``p(label | x)`` and the AUC of ``truth`` is the Bayes-optimal AUC.

``z(x)`` is built only from observed inputs: per-id random effects of Zipf-distributed sparse ids
(item-derived fields such as category/shop/brand are functions of the item id, as in real logs),
dense fields, and the overlap between behaviour sequences and the target (how often the target's
category/shop/... appears in the user's history), so sequence content carries part of the signal.
For three or more tasks every pair of task directions has cosine ``rho``
(``w_k = sqrt(rho) u_0 + sqrt(1 - rho) u_k`` with orthonormal ``u``), so ``rho`` is in [0, 1].

Selection bias (option ``selection_bias = s >= 0``, default 0 = the data above, unchanged): the
click logit gets ``s * LOGIT_SCALE * standardise(sum of the post-click step logits)`` added
(before the click rate is recalibrated), so users click where they would also convert, and the
clicked rows are a biased sample of the impressions a CVR model must rank. The conversion
mechanism does not depend on why a click happened (no unobserved confounder), so the true
p(leaf | do(click), x) of every row (the last task: purchase for 2-3 tasks, review for 4) is
``truth[:, -1] / truth[:, 0]`` (`do_click_truth`).

Position bias (option ``position_bias = s >= 0``, default 0 = no such field): a sparse field
``position`` (slots 1..10, drawn uniformly from their own stream: a randomised presentation
order, so the effect is identifiable and independent of relevance) adds
``s * LOGIT_SCALE * standardise(-log(position))`` to the click logit (before the click rate is
recalibrated); the post-click steps do not depend on it. ``truth`` stays the exact p(label | x)
(position included); the same seed with ``position_bias = 0`` gives the same inputs without the
field and its position-free relevance (`position_free`), e.g. to measure how well a model that
models the bias separately (YouTube's shallow tower) recovers relevance.

Option ``additive=true`` keeps every input array but replaces the step logits by a sum of per-id
and per-dense-value effects, ``l_k = sum_f a_{f,k}[id_f] + sum_j b_{j,k} x_j`` (effects of task k
= sqrt(rho) shared + sqrt(1 - rho) own draws, from a separate stream), so each cascade step is
exactly a logistic regression on one-hot ids and dense values: a well-specified model exists
(benchmarks/search_value.py compares the search with it).
"""

from __future__ import annotations

import functools

import numpy as np

from automtl.data.schema import Dataset, FeatureSpec, Split
from automtl.data.synthetic_schemas import SCHEMAS, SyntheticSchema, feature_specs, task_specs
from automtl.errors import DataError

_LATENT_DIM = 8
# Bump when the mapping (options -> arrays) changes, so on-disk caches of older data are not served
# (the loader puts it in the cache key; 2 and 3 were interim, unreleased versions).
GENERATOR_VERSION = 1
_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)

# Cascade base rates: p(click), p(cart | click), p(purchase | cart) for 3 tasks;
# p(click), p(purchase | click) for 2 tasks. Rarest task >= 1% of rows (>= 2000 at 200k).
# 4 tasks (issue 18, >= 4 tasks for MFH and the architecture benchmark): click -> cart ->
# purchase -> review, p(review | purchase) = 0.5; rarest task ~1.2% of rows.
_RATES = {2: (0.12, 0.12), 3: (0.15, 0.3, 0.3), 4: (0.2, 0.4, 0.4, 0.4)}
_LOGIT_SCALE = 1.1  # std of each task logit around its base rate
_N_SINE = 2


@functools.lru_cache(maxsize=64)
def _zipf_tables(vocab: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """CDF of p(rank r) ~ r^-a over 1..vocab and a guide table (Chen & Asau) of 2*vocab bins."""
    w = np.arange(1, vocab + 1, dtype=np.float64) ** -a
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    bins = 2 * vocab
    guide = np.searchsorted(cdf, np.arange(bins) / bins, side="right")
    return cdf, guide


def _zipf_ids(rng: np.random.Generator, n: int, vocab: int, a: float) -> np.ndarray:
    """Ids in [1, vocab] with p(rank r) proportional to r^-a (exact inverse CDF via guide table)."""
    cdf, guide = _zipf_tables(vocab, a)
    u = rng.random(n)
    ids = guide[(u * len(guide)).astype(np.int64)]
    while True:  # walk forward to the first rank whose CDF exceeds u (usually 0-1 steps)
        step = cdf[ids] <= u
        if not step.any():
            break
        ids[step] += 1
    return (ids + 1).astype(np.int32)


def _standardise(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    sd = x.std(axis=0)
    return x / np.where(sd > 0, sd, 1.0)


def _calibrate_bias(logit: np.ndarray, rate: float) -> float:
    """Bias b with mean(sigmoid(logit + b)) == rate (bisection; monotone in b)."""
    lo, hi = -20.0, 20.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if np.mean(1.0 / (1.0 + np.exp(-(logit + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _task_directions(rng: np.random.Generator, n_tasks: int, rho: float) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((_LATENT_DIM, _LATENT_DIM)))
    u0, rest = q[:, 0], q[:, 1 : n_tasks + 1]
    return np.sqrt(rho) * u0[:, None] + np.sqrt(1.0 - rho) * rest  # [D, n_tasks], unit columns


def _check_options(rows: int, n_tasks: int, rho: float, schema: str,
                   selection_bias: float = 0.0, position_bias: float = 0.0) -> None:
    for name, v in (("selection_bias", selection_bias), ("position_bias", position_bias)):
        if not 0.0 <= v <= 10.0:
            raise DataError(f"synthetic: option {name}={v} is out of range; "
                            f"use 0 <= {name} <= 10 (0 = none)")
    if rows < 100:
        raise DataError(f"synthetic: option rows={rows} is too small; use rows >= 100")
    if n_tasks not in _RATES:
        raise DataError(f"synthetic: option n_tasks={n_tasks} is not supported; use 2, 3 or 4")
    if not 0.0 <= rho <= 1.0:
        raise DataError(f"synthetic: option rho={rho} is out of range; use 0 <= rho <= 1")
    if schema not in SCHEMAS:
        raise DataError(
            f"synthetic: option schema={schema!r} is unknown; use one of {', '.join(SCHEMAS)}"
        )


# Peak bytes while generating, per stored byte (float64 latents, per-field temporaries).
_GENERATOR_PEAK = 4


def _check_rows_fit(sch: SyntheticSchema, rows: int, n_tasks: int) -> None:
    """Refuse `rows` whose columns cannot fit in RAM, before any array is allocated."""
    from automtl.memory_guard import check_fits

    per_row = (4 * len(sch.sparse) + 8 * sum(s.max_len for s in sch.sequences)
               + 4 * (len(sch.sequences) + 4) + 8 * (_LATENT_DIM + 2 * n_tasks))
    check_fits(f"synthetic: rows={rows:,}", rows * per_row * _GENERATOR_PEAK, "cpu",
               "lower the rows option")



def _sparse_ids(sch: SyntheticSchema, rng: np.random.Generator, prng: np.random.Generator,
                n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sparse ids (Zipf; item-derived fields as functions of the item id) and their summed latent
    effects z [n, D], each field scaled to std `weight`."""
    d = _LATENT_DIM
    ids: dict[str, np.ndarray] = {}
    z = np.zeros((n, d), dtype=np.float64)
    for f in sch.sparse:
        if f.derived_from is None:
            ids[f.name] = _zipf_ids(rng, n, f.vocab, f.zipf)
        else:
            parent = next(p for p in sch.sparse if p.name == f.derived_from)
            # Popular items map to popular categories: Zipf over the child vocab, per parent id.
            m = np.concatenate([[0], _zipf_ids(prng, parent.vocab, f.vocab, f.zipf)])
            ids[f.name] = m[ids[f.derived_from]]
        effect = prng.standard_normal((f.vocab + 1, d)).astype(np.float32)
        contrib = effect[ids[f.name]]
        sd = float(contrib.std()) or 1.0
        z += (f.weight / sd) * contrib
    return ids, z


def _behaviour_sequences(sch: SyntheticSchema, rng: np.random.Generator, prng: np.random.Generator,
                         ids: dict[str, np.ndarray], z: np.ndarray,
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Behaviour sequences: background history plus hits on the target's id. Returns the padded
    histories and their lengths; adds the overlap signal to `z` in place."""
    n, d = z.shape
    seqs: dict[str, np.ndarray] = {}
    lengths: dict[str, np.ndarray] = {}
    user_affinity = prng.standard_normal(sch.sparse[0].vocab + 1)[ids[sch.sparse[0].name]]
    for s in sch.sequences:
        target_field = next(p for p in sch.sparse if p.name == s.shares_with)
        target = ids[s.shares_with]
        length = np.minimum(rng.geometric(1.0 / (0.4 * s.max_len), n), s.max_len)
        # Unobserved interest: how often the user looked at this target before.
        q = 0.5 / (1.0 + np.exp(-(user_affinity + rng.standard_normal(n) - 1.0)))
        valid = np.arange(s.max_len)[None, :] < length[:, None]
        m = int(length.sum())  # only the filled positions are drawn (row-major = mask order)
        vals = _zipf_ids(rng, m, target_field.vocab, target_field.zipf)
        hit = rng.random(m) < np.repeat(q, length)
        vals = np.where(hit, np.repeat(target, length), vals)
        hist = np.zeros((n, s.max_len), dtype=np.int32)
        hist[valid] = vals
        seqs[s.name] = hist
        lengths[s.name] = length
        overlap = np.log1p((hist == target[:, None]).sum(axis=1)).astype(np.float64)
        vec = prng.standard_normal(d)
        vec /= np.linalg.norm(vec)
        z += s.weight * np.sqrt(d) * _standardise(overlap)[:, None] * vec[None, :]
    return seqs, lengths


def _dense_fields(sch: SyntheticSchema, rng: np.random.Generator, prng: np.random.Generator,
                  lengths: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Standardised dense fields [n, n_dense] (the last is pure noise); adds their signal to `z`."""
    n, d = z.shape
    dense_cols = []
    n_dense = len(sch.dense)
    for j, name in enumerate(sch.dense):
        if j == n_dense - 1:  # pure noise: a field that carries no signal
            col = rng.standard_normal(n)
        elif j < len(sch.sequences) and name.startswith("D"):  # Ali-CCP: value of a seq field
            col = np.log1p(lengths[sch.sequences[j].name]) + 0.3 * rng.standard_normal(n)
        else:
            col = rng.gamma(2.0, 1.0, n)
        col = _standardise(col.astype(np.float64))
        dense_cols.append(col)
        if j < n_dense - 1:
            vec = prng.standard_normal(d)
            vec /= np.linalg.norm(vec)
            z += 0.8 * np.sqrt(d) * col[:, None] * vec[None, :]
    return np.stack(dense_cols, axis=1).astype(np.float32)


_POSITIONS = 10  # slots of the position field (option position_bias)


def _positions(seed: int, n: int) -> np.ndarray:
    """Presentation slots 1.._POSITIONS, uniform, from their own stream (other arrays unchanged)."""
    return np.random.default_rng([seed, 15485863]).integers(1, _POSITIONS + 1, n).astype(np.int32)


def _cascade_labels(rng: np.random.Generator, prng: np.random.Generator, z: np.ndarray,
                    n_tasks: int, rho: float, selection_bias: float = 0.0,
                    logits: np.ndarray | None = None, position_bias: float = 0.0,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Task logits by the MMoE construction (or the given `logits`), then (truth, labels) along
    the cascade: truth[:, k] is the unconditional p(task k | x); a step's label needs the
    previous step's. A non-zero `selection_bias` adds the post-click logits to the click logit
    (module docstring)."""
    n = z.shape[0]
    z = _standardise(z)
    w = _task_directions(prng, n_tasks, rho)
    alpha = prng.standard_normal(_N_SINE)
    beta = prng.standard_normal(_N_SINE)
    t = z @ w  # [n, n_tasks], corr(t_a, t_b) ~= rho
    y = t + np.sin(alpha[None, None, :] * t[..., None] + beta[None, None, :]).sum(axis=-1)
    y = _standardise(y if logits is None else logits) * _LOGIT_SCALE
    if selection_bias:  # no random draws: the other arrays stay those of selection_bias = 0
        y[:, 0] += selection_bias * _LOGIT_SCALE * _standardise(y[:, 1:].sum(axis=1))
    if position_bias and positions is not None:  # the slot's effect on the click only
        y[:, 0] += position_bias * _LOGIT_SCALE * _standardise(-np.log(positions.astype(float)))
    rates = _RATES[n_tasks]
    step_p = np.empty_like(y)
    for k in range(n_tasks):
        step_p[:, k] = 1.0 / (1.0 + np.exp(-(y[:, k] + _calibrate_bias(y[:, k], rates[k]))))
    truth = np.cumprod(step_p, axis=1)
    u = rng.random((n, n_tasks))
    labels = np.cumprod(u < step_p, axis=1).astype(np.float32)  # cascade: step k needs k-1
    return truth, labels


def _additive_logits(seed: int, ids: dict[str, np.ndarray], dense: np.ndarray, sch: SyntheticSchema,
                     n_tasks: int, rho: float) -> np.ndarray:
    """Step logits [n, n_tasks] that are sums of per-id and per-dense-value effects."""
    g = np.random.default_rng([seed, 104729])  # own stream: the other arrays stay unchanged

    def effects(size: int) -> np.ndarray:
        shared = g.standard_normal(size)
        return np.stack([np.sqrt(rho) * shared + np.sqrt(1 - rho) * g.standard_normal(size)
                         for _ in range(n_tasks)], axis=1)  # [size, n_tasks]

    n = dense.shape[0]
    y = np.zeros((n, n_tasks))
    for f in sch.sparse:
        contrib = effects(f.vocab + 1)[ids[f.name]]
        y += f.weight * contrib / (contrib.std(axis=0) + 1e-12)
    y += dense.astype(np.float64) @ (0.8 * effects(dense.shape[1]))
    return y



def _split(sparse: np.ndarray, dense: np.ndarray, seqs: dict[str, np.ndarray],
           labels: np.ndarray, truth: np.ndarray) -> dict[str, Split]:
    """Contiguous 80/10/10 train/val/test splits (rows are i.i.d., so no shuffle is needed)."""
    n = len(labels)
    n_train = int(round(_SPLIT_FRACTIONS[0] * n))
    n_val = int(round(_SPLIT_FRACTIONS[1] * n))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, n)}
    return {
        name: Split(
            sparse=sparse[a:b],
            dense=dense[a:b],
            sequences={k: v[a:b] for k, v in seqs.items()},
            labels=labels[a:b],
            truth=truth[a:b].astype(np.float32),
        )
        for name, (a, b) in bounds.items()
    }


def generate_synthetic(
    rows: int = 200_000,
    n_tasks: int = 2,
    rho: float = 0.5,
    seed: int = 0,
    schema: str = "default",
    selection_bias: float = 0.0,
    additive: bool = False,
    position_bias: float = 0.0,
) -> Dataset:
    """A deterministic synthetic cascade dataset (80/10/10 split); `Split.truth` is p(task|x)."""
    if not isinstance(additive, bool):
        raise DataError(f"synthetic: option additive={additive!r} must be true or false")
    try:
        rows, n_tasks, rho, seed = int(rows), int(n_tasks), float(rho), int(seed)
        selection_bias, position_bias = float(selection_bias), float(position_bias)
    except (TypeError, ValueError):
        raise DataError(
            f"synthetic: options rows={rows!r}, n_tasks={n_tasks!r}, rho={rho!r}, seed={seed!r}, "
            f"selection_bias={selection_bias!r}, position_bias={position_bias!r} must be "
            "numbers; fix the option values"
        ) from None
    _check_options(rows, n_tasks, rho, schema, selection_bias, position_bias)
    sch = SCHEMAS[schema]
    _check_rows_fit(sch, rows, n_tasks)
    rng = np.random.default_rng(seed)
    # Model parameters come from their own stream so that `rows` does not change the mapping
    # from inputs to probabilities (only the normalisation constants). The parts below draw from
    # both streams in a fixed order: reordering them changes the data (bump GENERATOR_VERSION).
    prng = np.random.default_rng([seed, 7919])
    ids, z = _sparse_ids(sch, rng, prng, rows)
    seqs, lengths = _behaviour_sequences(sch, rng, prng, ids, z)
    dense = _dense_fields(sch, rng, prng, lengths, z)
    logits = _additive_logits(seed, ids, dense, sch, n_tasks, rho) if additive else None
    positions = _positions(seed, rows) if position_bias else None
    truth, labels = _cascade_labels(rng, prng, z, n_tasks, rho, selection_bias, logits,
                                    position_bias, positions)
    columns = [ids[f.name] for f in sch.sparse] + ([positions] if positions is not None else [])
    sparse = np.stack(columns, axis=1).astype(np.int32)
    features = feature_specs(sch)
    if positions is not None:  # the last sparse field (sparse fields precede the others)
        features.insert(len(sch.sparse), FeatureSpec("position", "sparse",
                                                     vocab_size=_POSITIONS + 1))
    options: dict[str, object] = {"rows": rows, "n_tasks": n_tasks, "rho": rho, "seed": seed,
                                  "schema": schema}
    if selection_bias:
        options["selection_bias"] = selection_bias
    if additive:
        options["additive"] = True
    if position_bias:
        options["position_bias"] = position_bias
    meta: dict[str, object] = {
        "source": "synthetic (generated)",
        "options": options,
        "generator_version": GENERATOR_VERSION,
    }
    return Dataset(name="synthetic", features=features, tasks=task_specs(sch, n_tasks),
                   splits=_split(sparse, dense, seqs, labels, truth), meta=meta)


def position_free(dataset: Dataset) -> Dataset:
    """The same impressions without the position field and its effect: `generate_synthetic`
    with the dataset's options and ``position_bias = 0`` (its `truth` is the position-free
    relevance; its labels are the clicks the same users would have made without the bias)."""
    options = dict(dataset.meta.get("options", {}))  # type: ignore[call-overload]
    options.pop("position_bias", None)
    return generate_synthetic(**options)


def do_click_truth(split: Split) -> np.ndarray:
    """True p(last task | do(click), x) per row of a synthetic split: the last task's truth over
    the click's (no unobserved confounder links the click to the purchase; module docstring)."""
    truth = np.asarray(split.truth, dtype=np.float64)
    return truth[:, -1] / truth[:, 0]
