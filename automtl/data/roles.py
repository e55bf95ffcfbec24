"""Which input fields describe the user, the ad (item) and the presentation (position bias).

DeepMCP's matching subnet pairs user fields with ad fields, its correlation subnet pairs ads
(`automtl.models.deepmcp`); the YouTube shallow tower reads the bias fields only the training
logs know (`automtl.models.shallow_tower`). A config may name the fields; otherwise they are
recognised by name, for the shipped datasets:

- synthetic (default schema): user_* fields are the user, item_id / category / shop / brand
  the ad, `position` (option ``position_bias``) the bias field;
- Ali-CCP (processed and raw, and the synthetic ``ali-ccp`` schema): 101 and 121-129 are user
  profile fields, 205 / 206 / 207 / 210 / 216 the item and its category / shop / intention node
  / brand (the field dictionary of the Ali-CCP release);
- AliExpress and Census-Income have anonymous or non-recommendation fields: no roles.

Torch-free, so the search space can ask which roles a dataset has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from automtl.data.schema import FeatureSpec

USER_FIELDS = ("user_id", "user_age", "user_gender", "user_city",
               "101", "121", "122", "124", "125", "126", "127", "128", "129")
AD_FIELDS = ("item_id", "category", "shop", "brand", "205", "206", "207", "210", "216")
BIAS_FIELDS = ("position",)


@dataclass(frozen=True)
class FieldRoles:
    """Sparse field names by role, in the dataset's feature order."""

    user: tuple[str, ...]
    ad: tuple[str, ...]
    bias: tuple[str, ...]
    ad_sequences: tuple[str, ...]  # behaviour sequences over an ad field (its embedding table)


def field_roles(features: Sequence[FeatureSpec]) -> FieldRoles:
    """The roles recognised by name (module docstring) among `features`' sparse fields."""
    sparse = [f.name for f in features if f.kind == "sparse"]
    ad = tuple(n for n in sparse if n in AD_FIELDS)
    return FieldRoles(
        user=tuple(n for n in sparse if n in USER_FIELDS),
        ad=ad,
        bias=tuple(n for n in sparse if n in BIAS_FIELDS),
        ad_sequences=tuple(f.name for f in features
                           if f.kind == "sequence" and f.shares_with in ad),
    )


__all__ = ["AD_FIELDS", "BIAS_FIELDS", "USER_FIELDS", "FieldRoles", "field_roles"]
