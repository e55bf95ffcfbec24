"""Typed configs of automtl and their YAML load/save (strict YAML itself: `automtl.yamlio`).

`TrialConfig` holds everything needed to rebuild and retrain one model (data, model, losses,
training). It round-trips through YAML: `automtl train --config X.yaml` reproduces a trial.
Unknown keys and wrong types are `ConfigError`s naming the file and YAML path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from automtl._typed import OneOf, from_dict, to_dict
from automtl.errors import ConfigError
from automtl.yamlio import dump_yaml, load_yaml


def _registered(kind: str) -> OneOf:
    def names() -> list[str]:
        # Imported when a name is checked, not when config is: the models pull in torch, and the
        # registries fill as `automtl.models` imports every file of archs/, bottoms/ and heads.
        from automtl.models.registry import registered_names

        return registered_names(kind)

    return OneOf(names)


# Vocabularies of the model registries (`register_arch` / `register_bottom` / `register_head`):
# a new file under automtl/models/ adds a name; nothing here changes.
Arch = Annotated[str, _registered("arch")]
Head = Annotated[str, _registered("head")]
Bottom = Annotated[str, _registered("bottom")]


def _positive(name: str, value: float | int) -> None:
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")


def _dims(name: str, dims: list[int]) -> None:
    if any(d <= 0 for d in dims):
        raise ConfigError(f"{name}: every layer size must be > 0, got {dims}")


@dataclass
class DataConfig:
    """Which dataset to load and with which options (see `automtl data list`)."""

    name: str = "synthetic"
    data_dir: str | None = None
    # loader-specific options, e.g. synthetic: rows, n_tasks, rho, seed, schema; aliexpress: country
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeepMCPConfig:
    """DeepMCP (IJCAI 2019) auxiliary subnets: L = L_pred + alpha * L_match + beta * L_corr
    (`automtl.models.deepmcp`). Empty field lists: the fields recognised by name."""

    alpha: float = 1.0  # matching subnet (user-ad)
    beta: float = 0.1  # correlation subnet (ad-ad); 0 = no correlation subnet
    dims: list[int] = field(default_factory=lambda: [64, 32])
    negatives: int = 4  # in-batch negative ads per positive pair
    window: int = 5  # history positions paired with the target ad
    user_fields: list[str] = field(default_factory=list)
    ad_fields: list[str] = field(default_factory=list)

    def validate(self) -> None:
        for name in ("alpha", "beta"):
            if not getattr(self, name) >= 0:  # also rejects NaN
                raise ConfigError(f"deepmcp.{name}: must be >= 0, got {getattr(self, name)}")
        if not self.dims or any(d <= 0 for d in self.dims):
            raise ConfigError(f"deepmcp.dims: give one or more layer sizes > 0, got {self.dims}")
        _positive("deepmcp.negatives", self.negatives)
        _positive("deepmcp.window", self.window)


@dataclass
class ShallowTowerConfig:
    """YouTube's shallow tower (RecSys 2019) on bias fields, added in training, dropped at
    serving (`automtl.models.shallow_tower`). Empty `fields`: the fields recognised by name."""

    fields: list[str] = field(default_factory=list)
    dims: list[int] = field(default_factory=lambda: [8])
    feature_dropout: float = 0.1  # the paper's 10% drop-out of the position feature

    def validate(self) -> None:
        _dims("shallow_tower.dims", self.dims)
        if not 0.0 <= self.feature_dropout < 1.0:
            raise ConfigError("shallow_tower.feature_dropout: must be in [0, 1), got "
                              f"{self.feature_dropout}")


@dataclass
class ModelConfig:
    """Architecture and sizes. Fields not used by the chosen `arch`/`bottom` are ignored."""

    arch: Arch = "mmoe"
    head: Head = "plain"  # esmm: p(task i) = p(task i-1) * p(task i | task i-1); esm2, escm2_*, dcmt
    bottom: Bottom = "shared"
    embedding_dim: int = 16
    seq_pooling: Literal["mean", "sum", "target_attention", "din"] = "mean"
    wide: bool = False  # add a first-order term (one weight per id / dense value) to every logit
    # shared_bottom / single: the bottom MLP; mmoe / ple: one expert's MLP
    bottom_dims: list[int] = field(default_factory=lambda: [256, 128])
    expert_dims: list[int] = field(default_factory=lambda: [256, 128])
    n_experts: int = 8  # mmoe
    n_levels: int = 2  # ple (1 = CGC); snr: layers of sub-networks
    n_shared_experts: int = 2  # ple, per level
    n_specific_experts: int = 2  # ple, per task per level
    tower_dims: list[int] = field(default_factory=lambda: [64])
    imputation_dims: list[int] = field(default_factory=list)  # escm2_dr: the imputation tower
    dropout: float = 0.0
    activation: Literal["relu", "gelu", "silu"] = "relu"
    # aitm: dimension of the information-transfer attention
    aitm_dim: int = 32
    # dtrn bottom (issue 8)
    transformer_layers: int = 1
    transformer_heads: int = 2
    transformer_dim: int = 32
    injection: Literal["ln", "qkv", "ffn1", "ffn2"] = "ln"
    trm: bool = True
    # apem / asrg bottom
    inducing_points: int = 8
    ps_layers: int = 2
    # apem smooth-step gamma = max(start - decay * training_step, min) (paper: 10, 2e-4, 1e-3)
    apem_gamma_start: float = 10.0
    apem_gamma_decay: float = 2e-4
    apem_gamma_min: float = 1e-3
    # stem bottom
    stem_embedding_dim: int = 16
    # issue 18 (automtl/models/archs/): dbmtl target DAG {task: [parent tasks]} ({} = the
    # dataset's cascade, else a chain in task order); snr connection type and L0 penalty weight;
    # fdn orthogonality and auxiliary-head loss weights
    dbmtl_parents: dict[str, list[str]] = field(default_factory=dict)
    snr_variant: Literal["trans", "aver"] = "trans"
    l0_weight: float = 1e-3
    fdn_orth_weight: float = 0.1
    fdn_aux_weight: float = 0.1
    # mfh: first-facet task groups (lists of task names; [] = the task list in two halves)
    mfh_groups: list[list[str]] = field(default_factory=list)
    # mose: units of every LSTM (shared bottom and each expert)
    lstm_dim: int = 32
    # stan: lifecycle stages derived from activity (history length buckets), or a sparse field
    # holding the stage; weight of the stage-detection loss; stage-adaptive task weights
    stan_stages: int = 4
    stan_stage_field: str = ""
    stan_weight: float = 0.1
    stan_adaptive_loss: bool = True
    # issue 18 add-ons for any arch: DeepMCP's auxiliary subnets, YouTube's shallow bias tower
    deepmcp: DeepMCPConfig | None = None
    shallow_tower: ShallowTowerConfig | None = None

    def validate(self) -> None:
        _positive("embedding_dim", self.embedding_dim)
        for name in ("n_experts", "n_levels", "n_shared_experts", "aitm_dim",
                     "transformer_layers", "transformer_heads", "transformer_dim",
                     "inducing_points", "ps_layers", "stem_embedding_dim", "lstm_dim",
                     "stan_stages"):
            _positive(name, getattr(self, name))
        if self.n_specific_experts < 0:
            raise ConfigError(f"n_specific_experts: must be >= 0, got {self.n_specific_experts}")
        for name in ("bottom_dims", "expert_dims", "tower_dims", "imputation_dims"):
            _dims(name, getattr(self, name))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        self._validate_bottoms()
        for name in ("l0_weight", "fdn_orth_weight", "fdn_aux_weight", "stan_weight"):
            if not getattr(self, name) >= 0:  # also rejects NaN
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for section in (self.deepmcp, self.shallow_tower):
            if section is not None:
                section.validate()

    def _validate_bottoms(self) -> None:
        # issue 8: DTRN / APEM / STEM settings
        _positive("apem_gamma_min", self.apem_gamma_min)
        if self.apem_gamma_start < self.apem_gamma_min:
            raise ConfigError(f"apem_gamma_start: must be >= apem_gamma_min ({self.apem_gamma_min}), "
                              f"got {self.apem_gamma_start}")
        if self.apem_gamma_decay < 0:
            raise ConfigError(f"apem_gamma_decay: must be >= 0, got {self.apem_gamma_decay}")
        if self.bottom == "dtrn" and self.transformer_dim % self.transformer_heads:
            raise ConfigError(f"transformer_heads: {self.transformer_heads} does not divide "
                              f"transformer_dim {self.transformer_dim}; pick a divisor")
        if "apem" in (self.arch, self.bottom) and self.embedding_dim % self.transformer_heads:
            raise ConfigError(f"transformer_heads: {self.transformer_heads} does not divide "
                              f"embedding_dim {self.embedding_dim} (APEM attention); pick a divisor")


@dataclass
class PWiseRConfig:
    """PWiseR pairwise ranking term: Loss = BCE + lambda * PWiseR."""

    lam: float = 0.1
    m1: float = 0.3  # conversion vs click-only margin
    m2: float = 0.3  # conversion vs no-click margin
    task: str | None = None  # task whose scores are ranked; None = the last task of the cascade

    def validate(self) -> None:
        for name in ("lam", "m1", "m2"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass
class DependencyConfig:
    """APEM sequential-dependence loss L_D: tau per adjacent task pair."""

    tau: list[float] = field(default_factory=lambda: [0.1])

    def validate(self) -> None:
        if not self.tau or any(t < 0 for t in self.tau):
            raise ConfigError(f"tau: give one or more values >= 0, got {self.tau}")


@dataclass
class CalibratorConfig:
    """AITM behavioural-expectation calibrator: alpha * sum max(p_t - p_{t-1}, 0)."""

    alpha: float = 0.6

    def validate(self) -> None:
        if self.alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")


FILM_SITES = ("towers", "experts", "gates", "bottom")


def _propensity_clip(clip: float) -> None:
    if not 0.0 < clip < 0.5:
        raise ConfigError(f"clip: the propensity floor must be in (0, 0.5), got {clip}")


@dataclass
class ESCM2Config:
    """ESCM2 (head escm2_ips / escm2_dr): L = L_ctr + lambda_c R_cvr + lambda_g L_ctcvr."""

    lambda_c: float = 0.1  # weight of the counterfactual CVR risk (IPS or DR)
    lambda_g: float = 1.0  # weight of the CTCVR (global) loss
    clip: float = 0.05  # propensity floor: p_ctr is clipped to [clip, 1] before 1 / p_ctr
    self_normalize: bool = False  # divide by sum of 1 / p_ctr over clicks instead of N (SNIPS)

    def validate(self) -> None:
        for name in ("lambda_c", "lambda_g"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        _propensity_clip(self.clip)


@dataclass
class DCMTConfig:
    """DCMT (head dcmt): IPW factual + counterfactual CVR losses and the soft constraint."""

    lambda_c: float = 1.0  # weight of the twin (factual + counterfactual) CVR loss
    lambda_s: float = 0.01  # weight of the soft constraint |1 - (r + r*)|
    clip: float = 0.05  # propensity clipped to [clip, 1 - clip]
    self_normalize: bool = False

    def validate(self) -> None:
        for name in ("lambda_c", "lambda_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        _propensity_clip(self.clip)


def direction(values: list[float]) -> list[float]:
    """Task weights as a preference direction summing to 1, computed in float64 after scaling
    to the largest (a float32 sum of weights above ~3e38 is inf; tiny ones must not vanish).
    The largest weight must be positive (callers refuse other vectors in their own words)."""
    top = max(values)
    total = sum(v / top for v in values)
    return [v / top / total for v in values]


@dataclass
class WeightingConfig:
    """How per-task BCE losses are combined.

    `conditioned` (preference-conditioned training, `automtl.losses.conditioned`): each batch
    (or row, `draw: row`) draws a task-weight vector r ~ Dirichlet(`concentration`), trains on
    T * sum_k r_k L_k (minus `cosine` * cos(r, L / s), COSMOS, s the losses' running scale) and
    feeds r to FiLM layers at `film` sites; after training the model is evaluated at
    `sweep_points` fixed vectors (0 = default grid). `preference` is the vector it serves at
    (empty: the knee of the sweep over `select_on` metrics, default every task's AUC).
    """

    scheme: Literal["fixed", "ple_decay", "uncertainty", "gradnorm", "conditioned"] = "fixed"
    weights: dict[str, float] = field(default_factory=dict)  # per task; missing tasks get 1.0
    gamma: float = 0.9  # ple_decay: w_t = w_0 * gamma^epoch
    gradnorm_alpha: float = 1.5
    # conditioned (issue 16)
    concentration: float = 1.0  # Dirichlet alpha (same for every task); 1 = uniform on the simplex
    draw: Literal["batch", "row"] = "batch"
    cosine: float = 0.0  # COSMOS lambda; 0 = plain linear scalarisation
    film: list[str] = field(default_factory=lambda: ["bottom"])  # shared: see models/film.py
    film_hidden: int = 32
    sweep_points: int = 0
    preference: dict[str, float] = field(default_factory=dict)
    select_on: list[str] = field(default_factory=list)

    def validate(self) -> None:
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            key = next(iter(bad))
            raise ConfigError(f"weights.{key}: must be >= 0, got {bad[key]}")
        self._validate_conditioned()
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma: must be in (0, 1], got {self.gamma}")
        if self.gradnorm_alpha < 0:
            raise ConfigError(f"gradnorm_alpha: must be >= 0, got {self.gradnorm_alpha}")

    def _validate_conditioned(self) -> None:
        _positive("concentration", self.concentration)
        _positive("film_hidden", self.film_hidden)
        if self.cosine < 0:
            raise ConfigError(f"cosine: must be >= 0, got {self.cosine}")
        if self.sweep_points < 0 or self.sweep_points == 1:
            raise ConfigError(f"sweep_points: must be 0 (default grid) or >= 2, "
                              f"got {self.sweep_points}")
        unknown = [s for s in self.film if s not in FILM_SITES]
        if unknown:
            raise ConfigError(f"film: unknown site {unknown[0]!r}; use some of "
                              f"{', '.join(FILM_SITES)}")
        if self.scheme == "conditioned" and not self.film:
            raise ConfigError("film: conditioned weighting needs at least one FiLM site, "
                              "e.g. [towers]")
        if self.preference and self.scheme != "conditioned":
            # e.g. an exported conditioned trial whose scheme was edited: the vector would be
            # silently unused (a fixed scheme's per-task weights are `weights`)
            raise ConfigError(f"preference: only a conditioned scheme serves a preference "
                              f"(scheme is {self.scheme!r}); remove preference, or give the "
                              "task weights as weights: {TASK: W}")
        bad = {k: v for k, v in self.preference.items() if v < 0}
        if bad or (self.preference and sum(self.preference.values()) <= 0):
            raise ConfigError(f"preference: weights must be >= 0 with a positive sum, "
                              f"got {self.preference}")


@dataclass
class LossConfig:
    """The loss mix: per-task BCE plus optional terms, combined by a weighting scheme."""

    pwiser: PWiseRConfig | None = None
    dependency: DependencyConfig | None = None
    calibrator: CalibratorConfig | None = None
    escm2: ESCM2Config | None = None  # settings of head escm2_*; defaults when null
    dcmt: DCMTConfig | None = None  # settings of head dcmt; defaults when null
    weighting: WeightingConfig = field(default_factory=WeightingConfig)


@dataclass
class TrainConfig:
    """Optimiser and loop settings of one training run."""

    # lazy_adam / lazy_adamw: row-wise Adam on embedding tables (rows a batch used only)
    optimizer: Literal["adam", "adamw", "clippy", "lazy_adam", "lazy_adamw"] = "adam"
    lr: float = 1e-3
    # clippy (KDD 2023): per-step update bound lambda_rel * |w| + lambda_abs per coordinate
    clippy_rel: float = 0.5
    clippy_abs: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 2048
    eval_batch_size: int = 16384
    epochs: int = 3
    patience: int = 2  # early stopping on mean validation AUC
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU

    def validate(self) -> None:
        for name in ("lr", "batch_size", "eval_batch_size", "epochs"):
            _positive(name, getattr(self, name))
        if self.patience < 0:
            raise ConfigError(f"patience: must be >= 0, got {self.patience}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay: must be >= 0, got {self.weight_decay}")
        if not self.clippy_rel >= 0:
            raise ConfigError(f"clippy_rel: must be >= 0, got {self.clippy_rel}")
        if not self.clippy_abs > 0:
            raise ConfigError(f"clippy_abs: must be > 0, got {self.clippy_abs}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip: must be > 0 (or null for none), got {self.grad_clip}")


@dataclass
class TrialConfig:
    """Everything needed to rebuild and retrain one model."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_trial_config(path: str | Path) -> TrialConfig:
    """Load a `TrialConfig` from YAML or JSON (JSON is valid YAML)."""
    return from_dict(TrialConfig, load_yaml(path), where=str(path))


def save_trial_config(cfg: TrialConfig, path: str | Path) -> None:
    """Write `cfg` as YAML."""
    Path(path).write_text(dump_yaml(cfg), encoding="utf-8")


__all__ = [
    "Arch", "Bottom", "CalibratorConfig", "DCMTConfig", "DataConfig", "DeepMCPConfig",
    "DependencyConfig", "ESCM2Config", "FILM_SITES", "Head", "LossConfig", "ModelConfig",
    "PWiseRConfig", "ShallowTowerConfig", "TrainConfig", "TrialConfig", "WeightingConfig",
    "direction", "from_dict", "load_trial_config", "save_trial_config", "to_dict",
]
