"""Run FuxiCTR's own data pipeline on an automtl FuxiCTR export (subprocess of test_export_fuxictr).

Usage: python fuxictr_build.py CONFIG_DIR EXPID RAY_TEMP_DIR

The steps of FuxiCTR's ``model_zoo/multitask/*/run_expid.py`` up to the model class, which the
pip wheel does not ship: ``load_config`` (model_config.yaml + dataset_config.yaml),
``FeatureProcessor`` + ``build_dataset`` (feature_map.json and the parquet data files from the
CSVs), ``FeatureMap.load``, ``RankDataLoader`` for one training batch, and the
``FeatureEmbedding`` every multi-task zoo model starts with, applied to that batch. Prints one
JSON document with what the test checks. Ray (FuxiCTR's data engine) runs as a private local
instance with one CPU, shut down at the end.
"""

from __future__ import annotations

import json
import logging
import os
import sys


def main(config_dir: str, expid: str, ray_dir: str) -> dict:
    import ray
    import torch
    from fuxictr.features import FeatureMap
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.layers import FeatureEmbedding
    from fuxictr.pytorch.torch_utils import get_activation, get_loss, get_optimizer, get_regularizer
    from fuxictr.utils import load_config

    params = load_config(config_dir, expid)
    # address="local": never join another process's Ray cluster on this machine
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, _temp_dir=ray_dir)
    try:
        encoder = FeatureProcessor(**params)
        params["train_data"], params["valid_data"], params["test_data"] = \
            build_dataset(encoder, **params)
        data_dir = os.path.join(params["data_root"], params["dataset_id"])
        feature_map = FeatureMap(params["dataset_id"], data_dir)
        feature_map.load(os.path.join(data_dir, "feature_map.json"), params)
        train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)
        batch = next(iter(train_gen))
        inputs = {k: v for k, v in batch.items() if k not in feature_map.labels}
        torch.manual_seed(0)
        emb = FeatureEmbedding(feature_map, params["embedding_dim"])(inputs)
        # the shared pieces every zoo model's constructor calls with these params
        net = torch.nn.Linear(2, 2)
        optimizer = type(get_optimizer(params["optimizer"], net.parameters(),
                                       params["learning_rate"])).__name__
        activation = type(get_activation(params["hidden_activations"])).__name__
        losses = [getattr(get_loss(name), "__name__", str(get_loss(name)))
                  for name in params["loss"]]
        get_regularizer(params["net_regularizer"])
        get_regularizer(params["embedding_regularizer"])
        return {
            "params": sorted(params),
            "data": [params["train_data"], params["valid_data"], params["test_data"]],
            "features": feature_map.features,
            "labels": feature_map.labels,
            "num_fields": feature_map.num_fields,
            "train_samples": train_gen.num_samples,
            "valid_samples": valid_gen.num_samples,
            "batch": {k: list(v.shape) for k, v in batch.items()},
            "embedding": list(emb.shape),
            "optimizer": optimizer,
            "activation": activation,
            "losses": losses,
        }
    finally:
        ray.shutdown()


if __name__ == "__main__":
    result = main(*sys.argv[1:4])
    print("FUXICTR_RESULT " + json.dumps(result))
