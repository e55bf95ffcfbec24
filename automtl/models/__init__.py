"""automtl.models: blocks, input bottoms, MTL architectures, heads and `build_model`.

Architectures register with `register_arch`, input bottoms with `register_bottom`, heads with
`register_head`; importing this package imports every module of `archs/` and `bottoms/` and the
heads, so the registries (the `model.arch` / `model.bottom` / `model.head` vocabularies) are complete.
"""

from automtl.models import archs as _archs  # registers the architectures
from automtl.models import bottoms as _bottoms  # registers the bottoms
from automtl.models import cascade_heads as _cascade_heads  # registers esm2/escm2_*/dcmt
from automtl.models.base import Body, BodyInput, as_input, require_layers
from automtl.models.blocks import (
    SoftmaxGates,
    StackedLinear,
    StackedMLP,
    Towers,
    mix_experts,
    mlp,
    scatter_gates,
)
from automtl.models.bottoms.shared import SharedInput
from automtl.models.deepmcp import DeepMCP
from automtl.models.embedding import EmbeddedBatch, FeatureEmbedding, SequencePooling
from automtl.models.hard_concrete import HardConcreteGates
from automtl.models.heads import ESMMHead, PlainHead, cascade_order, has_cascade, parent_indices
from automtl.models.model import MTLModel, build_model, count_parameters
from automtl.models.registry import (
    ARCHS,
    BOTTOMS,
    HEADS,
    register_arch,
    register_bottom,
    register_head,
    registered_names,
)
from automtl.models.shallow_tower import ShallowTower
from automtl.models.wide import WideTerm

__all__ = [
    "ARCHS",
    "BOTTOMS",
    "HEADS",
    "Body",
    "BodyInput",
    "DeepMCP",
    "ESMMHead",
    "EmbeddedBatch",
    "FeatureEmbedding",
    "HardConcreteGates",
    "MTLModel",
    "PlainHead",
    "SequencePooling",
    "ShallowTower",
    "SharedInput",
    "SoftmaxGates",
    "StackedLinear",
    "StackedMLP",
    "Towers",
    "WideTerm",
    "as_input",
    "build_model",
    "cascade_order",
    "count_parameters",
    "has_cascade",
    "mix_experts",
    "mlp",
    "parent_indices",
    "register_arch",
    "register_bottom",
    "scatter_gates",
    "register_head",
    "registered_names",
    "require_layers",
]
del _archs, _bottoms, _cascade_heads
