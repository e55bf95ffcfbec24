"""automtl.data: the dataset registry, loaders, synthetic data with known truth, batching.

`load_dataset(DataConfig)` returns the `Dataset` contract of `automtl.data.schema`.
"""

from automtl.data.batching import Batch, DeviceSplit, iter_batches
from automtl.data.bayes import bayes_auc
from automtl.data.registry import (
    DATASETS,
    DatasetInfo,
    check_data_config,
    clear_memo,
    files_present,
    get_info,
    load_dataset,
    parse_options,
    register_dataset,
    resolve_data_dir,
    resolve_options,
)
from automtl.data.roles import FieldRoles, field_roles
from automtl.data.schema import Dataset, FeatureSpec, Split, TaskSpec
from automtl.data.streaming import StreamedSplit
from automtl.data.synthetic import do_click_truth, generate_synthetic, position_free

from automtl.data import datasets as _datasets  # noqa: E402,F401  (fills DATASETS)

__all__ = [
    "DATASETS",
    "Batch",
    "Dataset",
    "DatasetInfo",
    "DeviceSplit",
    "FeatureSpec",
    "FieldRoles",
    "Split",
    "StreamedSplit",
    "TaskSpec",
    "bayes_auc",
    "check_data_config",
    "clear_memo",
    "do_click_truth",
    "field_roles",
    "files_present",
    "generate_synthetic",
    "get_info", "resolve_options",
    "iter_batches",
    "load_dataset",
    "parse_options",
    "position_free",
    "register_dataset",
    "resolve_data_dir",
]
