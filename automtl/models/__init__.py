"""automtl.models: blocks, input bottoms, MTL architectures, heads and `build_model`.

Architectures register with `register_arch`, input bottoms with `register_bottom`; importing this
package imports every module of `archs/` and `bottoms/`, so both registries are complete.
"""

from automtl.models.base import Body, BodyInput, as_input
from automtl.models.blocks import SoftmaxGates, StackedLinear, StackedMLP, Towers, mix_experts, mlp
from automtl.models.embedding import EmbeddedBatch, FeatureEmbedding, SequencePooling
from automtl.models.heads import ESMMHead, PlainHead, cascade_order, has_cascade, parent_indices
from automtl.models.model import MTLModel, build_model, count_parameters
from automtl.models.registry import ARCHS, BOTTOMS, register_arch, register_bottom

from automtl.models import archs as _archs  # noqa: E402,F401  (registers the architectures)
from automtl.models import bottoms as _bottoms  # noqa: E402,F401  (registers the bottoms)
from automtl.models.bottoms.shared import SharedInput  # noqa: E402

__all__ = [
    "ARCHS", "BOTTOMS", "Body", "BodyInput", "ESMMHead", "EmbeddedBatch", "FeatureEmbedding",
    "MTLModel", "PlainHead", "SequencePooling", "SharedInput", "SoftmaxGates", "StackedLinear",
    "StackedMLP", "Towers", "as_input", "build_model", "cascade_order", "count_parameters",
    "has_cascade", "mix_experts", "mlp", "parent_indices", "register_arch", "register_bottom",
]
