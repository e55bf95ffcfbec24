"""Input bottoms (`register_bottom`): "shared" plus the task-specific DTRN (CIKM'23), APEM's ASRG
(2023) and STEM (AAAI'24), and their building blocks. Every public module in this folder is
imported, so it registers.
"""

from __future__ import annotations

import importlib
import pkgutil

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

from automtl.models.bottoms.apem import ASRG, GammaSchedule, PatternSelector, smooth_step  # noqa: E402
from automtl.models.bottoms.dtrn import (  # noqa: E402
    INJECTIONS,
    TIM,
    TRM,
    CondLayerNorm,
    CondLinear,
    ConditionalBlock,
    ConditionalTransformer,
    HyperNetwork,
)
from automtl.models.bottoms.shared import SharedInput  # noqa: E402
from automtl.models.bottoms.stem import AFTBGate  # noqa: E402

__all__ = [
    "AFTBGate", "ASRG", "CondLayerNorm", "CondLinear", "ConditionalBlock",
    "ConditionalTransformer", "GammaSchedule", "HyperNetwork", "INJECTIONS", "PatternSelector",
    "SharedInput", "TIM", "TRM", "smooth_step",
]
