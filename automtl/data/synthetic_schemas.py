"""The field layouts the synthetic generator can produce (`SCHEMAS`): sparse fields with their
vocabulary, Zipf exponent and weight in the latent, behaviour sequences over another field's ids,
dense fields and label names; and the feature/task specs a generated dataset declares.
"""

from __future__ import annotations

from dataclasses import dataclass

from automtl.data.schema import FeatureSpec, TaskSpec


@dataclass(frozen=True)
class SparseField:
    """A sparse id field: Zipf-distributed ids, optionally a function of another field's id."""

    name: str
    vocab: int  # number of real ids (the stored vocab_size is vocab + 1; 0 = OOV)
    zipf: float = 1.1
    weight: float = 1.0  # relative std of this field's contribution to z
    derived_from: str | None = None  # a function of another field's id (item -> category)


@dataclass(frozen=True)
class SequenceField:
    """A behaviour sequence over the ids of the field it `shares_with`."""

    name: str
    shares_with: str
    max_len: int
    weight: float = 1.0  # relative std of the overlap signal


@dataclass(frozen=True)
class SyntheticSchema:
    """The field layout of one synthetic schema."""

    sparse: tuple[SparseField, ...]
    sequences: tuple[SequenceField, ...]
    dense: tuple[str, ...]  # the last dense field is pure noise
    labels: tuple[str, ...]  # label column names for 3 tasks: click, cart, purchase


DEFAULT_SCHEMA = SyntheticSchema(
    sparse=(
        SparseField("user_id", 100_000, 1.05, 0.6),
        SparseField("item_id", 50_000, 1.1, 1.0),
        SparseField("category", 800, 1.0, 0.8, "item_id"),
        SparseField("shop", 20_000, 1.0, 0.6, "item_id"),
        SparseField("brand", 8_000, 1.0, 0.6, "item_id"),
        SparseField("user_age", 8, 0.6, 0.5),
        SparseField("user_gender", 3, 0.5, 0.3),
        SparseField("user_city", 400, 1.0, 0.4),
        SparseField("device", 6, 0.8, 0.3),
        SparseField("hour", 24, 0.3, 0.3),
    ),
    sequences=(
        SequenceField("hist_item_ids", "item_id", 30, 1.0),
        SequenceField("hist_categories", "category", 30, 1.2),
    ),
    dense=("price", "user_activity", "item_popularity", "noise"),
    labels=("click", "cart", "purchase"),
)

# Field names of the Ali-CCP processed release (101 user, 205 item, 206 category, 207 shop,
# 210 intention node, 216 brand; 109_14/110_14/127_14/150_14 behaviour sequences over
# category/shop/brand/intention; D* the values of the multi-valued fields).
ALI_CCP_SCHEMA = SyntheticSchema(
    sparse=(
        SparseField("101", 100_000, 1.05, 0.6),
        SparseField("121", 98, 1.0, 0.3),
        SparseField("122", 14, 0.8, 0.3),
        SparseField("124", 3, 0.5, 0.2),
        SparseField("125", 8, 0.6, 0.3),
        SparseField("126", 4, 0.5, 0.2),
        SparseField("127", 4, 0.5, 0.2),
        SparseField("128", 3, 0.5, 0.2),
        SparseField("129", 5, 0.5, 0.2),
        SparseField("205", 60_000, 1.1, 1.0),
        SparseField("206", 6_000, 1.0, 0.8, "205"),
        SparseField("207", 30_000, 1.0, 0.6, "205"),
        SparseField("210", 20_000, 1.0, 0.5, "205"),
        SparseField("216", 20_000, 1.0, 0.6, "205"),
        SparseField("508", 8_000, 1.0, 0.3),
        SparseField("509", 40_000, 1.0, 0.3),
        SparseField("702", 30_000, 1.0, 0.3),
        SparseField("853", 30_000, 1.0, 0.3),
        SparseField("301", 3, 0.5, 0.3),
    ),
    sequences=(
        SequenceField("109_14", "206", 20, 1.2),
        SequenceField("110_14", "207", 20, 0.8),
        SequenceField("127_14", "216", 20, 0.8),
        SequenceField("150_14", "210", 20, 0.8),
    ),
    dense=("D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"),
    labels=("click", "cart", "purchase"),
)

SCHEMAS: dict[str, SyntheticSchema] = {"default": DEFAULT_SCHEMA, "ali-ccp": ALI_CCP_SCHEMA}


def task_specs(schema: SyntheticSchema, n_tasks: int) -> list[TaskSpec]:
    """The cascade tasks of a generated dataset (2: click -> purchase; 3: + cart; 4: + review)."""
    click, cart, purchase = schema.labels
    if n_tasks == 2:
        return [
            TaskSpec("ctr", click),
            TaskSpec("ctcvr", purchase, depends_on="ctr", cond_name="cvr"),
        ]
    tasks = [
        TaskSpec("ctr", click),
        TaskSpec("ctcart", cart, depends_on="ctr", cond_name="cart"),
        TaskSpec("ctcvr", purchase, depends_on="ctcart", cond_name="cvr"),
    ]
    if n_tasks == 4:  # a fourth cascade step after purchase (not an Ali-CCP label)
        tasks.append(TaskSpec("ctreview", "review", depends_on="ctcvr", cond_name="review"))
    return tasks


def feature_specs(sch: SyntheticSchema) -> list[FeatureSpec]:
    """The feature specs of a generated dataset (stored vocab = real ids + OOV 0)."""
    vocab = {f.name: f.vocab + 1 for f in sch.sparse}  # stored vocab: real ids + OOV 0
    features = [FeatureSpec(f.name, "sparse", vocab_size=vocab[f.name]) for f in sch.sparse]
    features += [FeatureSpec(name, "dense") for name in sch.dense]
    features += [FeatureSpec(s.name, "sequence", vocab_size=vocab[s.shares_with],
                             max_len=s.max_len, shares_with=s.shares_with)
                 for s in sch.sequences]
    return features
