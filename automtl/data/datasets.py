"""Registration of the built-in datasets (imported by `automtl.data`).

- ``synthetic``: generated in memory (cached on disk from 100k rows on).
- ``ali-ccp``: processed CSV layout (``click,purchase``, 23 sparse, 8 dense ``D*``) or the
  columnar folder written by ``automtl data prepare ali-ccp`` (with behaviour sequences).
- ``aliexpress``: ``search_id, categorical_1..16, numerical_1..63, click, conversion``.
- ``census-income``: 40 census columns + ``income``; tasks income > 50K and never married
  (the processed sample encodes ``marital status`` as 1 = never married).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from automtl.data.ali_ccp_parse import DENSE_FIELDS, SEQ_FIELDS, SPARSE_FIELDS
from automtl.data.cache import cached
from automtl.data.columnar import is_columnar, load_columnar
from automtl.data.registry import DatasetInfo, register_dataset
from automtl.data.schema import Dataset, TaskSpec
from automtl.data.synthetic import GENERATOR_VERSION, generate_synthetic
from automtl.data.tabular import TableLayout, build_dataset, find_split_files
from automtl.errors import DataError

CASCADE = (TaskSpec("ctr", "click"), TaskSpec("ctcvr", "purchase", "ctr", "cvr"))
SYNTHETIC_CACHE_ROWS = 100_000  # smaller synthetic sets are faster to generate than to cache


# --- synthetic --------------------------------------------------------------------------------

def _load_synthetic(_: Path | None, opts: dict[str, Any]) -> Dataset:
    if int(opts["rows"]) < SYNTHETIC_CACHE_ROWS:
        return generate_synthetic(**opts)
    # the generator version is part of the key: a changed generator never serves stale arrays;
    # selection_bias = 0 is the data from before the option existed, cached under the same key
    key_opts = {**opts, "generator_version": GENERATOR_VERSION}
    for name in ("selection_bias", "position_bias"):
        if key_opts.get(name) in (0, 0.0):
            del key_opts[name]
    return cached("synthetic", key_opts, [], lambda: generate_synthetic(**opts))


register_dataset(DatasetInfo(
    name="synthetic",
    description="generated click->purchase (or click->cart->purchase) cascade with known truth",
    tasks=("ctr", "ctcvr (cvr)", "n_tasks=3: ctcart (cart)"),
    source="generated in memory (deterministic from seed)",
    loader=_load_synthetic,
    options={"rows": 200_000, "n_tasks": 2, "rho": 0.5, "seed": 0, "schema": "default",
             "selection_bias": 0.0, "additive": False, "position_bias": 0.0},
    needs_files=False,
))


# --- ali-ccp ----------------------------------------------------------------------------------

# The processed CSV has the behaviour fields as single sparse ids, not sequences.
ALI_CCP_SPARSE = SPARSE_FIELDS + SEQ_FIELDS
ALI_CCP_DENSE = DENSE_FIELDS
ALI_CCP_LAYOUT = TableLayout(sparse=ALI_CCP_SPARSE, dense=ALI_CCP_DENSE, tasks=CASCADE)
ALI_CCP_FILES = ("ali_ccp_{split}.csv", "ali_ccp_{split}_sample.csv", "{split}.csv")
ALI_CCP_SOURCE = "Tianchi dataset 408 (https://tianchi.aliyun.com/dataset/408)"


def _ali_ccp_present(folder: Path) -> bool:
    return is_columnar(folder) or "train" in find_split_files(folder, ALI_CCP_FILES)


def _ali_ccp_hint(folder: Path) -> str | None:
    if (folder / "sample_skeleton_train.csv").is_file():
        return (f"ali-ccp: {folder} holds the raw Tianchi release; convert it first with "
                f"`automtl data prepare ali-ccp --raw {folder} --out DIR`, then use --data-dir DIR")
    return None


def _load_ali_ccp(folder: Path | None, opts: dict[str, Any]) -> Dataset:
    assert folder is not None
    if is_columnar(folder):  # written by `automtl data prepare ali-ccp`
        ds = load_columnar(folder)
        ds.meta["source"] = str(folder)
        return ds
    files = find_split_files(folder, ALI_CCP_FILES)
    return _tabular("ali-ccp", folder, ALI_CCP_LAYOUT, files, opts)


# Bump a data set's reader version when its reader turns the same files into other arrays (or
# now refuses them), so a cache written by the old reader is not served: only that data set's
# caches are rebuilt. census-income 2: a text label among 0/1 numbers is refused (it made every
# 1 of the column 0).
READER_VERSIONS: dict[str, int] = {"census-income": 2}


def _tabular(name: str, folder: Path, layout: TableLayout, files: dict[str, Path],
             opts: dict[str, Any]) -> Dataset:
    def build() -> Dataset:
        return build_dataset(name, layout, files, float(opts["val_fraction"]), int(opts["seed"]),
                             {"source": str(folder), "options": dict(opts)})

    version = READER_VERSIONS.get(name, 1)  # version 1 adds nothing: those keys stay as they were
    key_opts = {**opts, "reader_version": version} if version > 1 else opts
    return cached(name, key_opts, [files[s] for s in sorted(files)], build)


register_dataset(DatasetInfo(
    name="ali-ccp",
    description="Taobao impressions -> click -> purchase (processed CSV or prepared raw release)",
    tasks=("ctr", "ctcvr (cvr)"),
    source=ALI_CCP_SOURCE,
    loader=_load_ali_ccp,
    options={"val_fraction": 0.1, "seed": 0},
    present=_ali_ccp_present,
    hint=_ali_ccp_hint,
    get_data="run `automtl data prepare ali-ccp --raw DIR` (writes ~/.cache/automtl/ali-ccp) or "
             "pass --data-dir to a folder with ali_ccp_{train,val,test}.csv",
))


# --- aliexpress -------------------------------------------------------------------------------

ALIEXPRESS_LAYOUT = TableLayout(
    sparse=tuple(f"categorical_{i}" for i in range(1, 17)),
    dense=tuple(f"numerical_{i}" for i in range(1, 64)),
    tasks=(TaskSpec("ctr", "click"), TaskSpec("ctcvr", "conversion", "ctr", "cvr")),
    ignore=("search_id",),
)
ALIEXPRESS_SOURCE = "Tianchi dataset 74690 (https://tianchi.aliyun.com/dataset/74690)"
COUNTRIES = ("nl", "es", "fr", "us")


def _aliexpress_files(folder: Path, country: str) -> dict[str, Path]:
    """Country folders (AliExpress_NL/, nl/) first, then country-named files, then plain files."""
    cc = country.lower()
    for sub in (folder / f"AliExpress_{cc.upper()}", folder / cc, folder / cc.upper()):
        files = find_split_files(sub, ("{split}.csv", "aliexpress_{split}.csv"))
        if files:
            return files
    return find_split_files(folder, (f"aliexpress_{cc}_{{split}}.csv", "aliexpress_{split}.csv",
                                     "aliexpress_{split}_sample.csv", "{split}.csv"))


def _aliexpress_present(folder: Path) -> bool:
    return any("train" in _aliexpress_files(folder, c) for c in COUNTRIES)


def _load_aliexpress(folder: Path | None, opts: dict[str, Any]) -> Dataset:
    assert folder is not None
    country = str(opts["country"]).lower()
    if country not in COUNTRIES:
        raise DataError(f"aliexpress: option country={opts['country']!r} is unknown; "
                        f"use one of {', '.join(COUNTRIES)}")
    files = _aliexpress_files(folder, country)
    if "train" not in files:
        raise DataError(f"aliexpress: no files for country {country} in {folder}; get "
                        f"{ALIEXPRESS_SOURCE} and unzip AliExpress_{country.upper()} there")
    return _tabular("aliexpress", folder, ALIEXPRESS_LAYOUT, files, {**opts, "country": country})


register_dataset(DatasetInfo(
    name="aliexpress",
    description="AliExpress search logs (country nl|es|fr|us): click -> conversion",
    tasks=("ctr", "ctcvr (cvr)"),
    source=ALIEXPRESS_SOURCE,
    loader=_load_aliexpress,
    options={"country": "nl", "val_fraction": 0.1, "seed": 0},
    present=_aliexpress_present,
    get_data="unzip AliExpress_NL (ES, FR, US) as <dir>/AliExpress_NL/{train,test}.csv and pass "
             "--data-dir <dir> (or set AUTOMTL_DATA)",
))


# --- census-income ----------------------------------------------------------------------------

CENSUS_DENSE = ("age", "wage per hour", "capital gains", "capital losses", "divdends from stocks",
                "num persons worked for employer", "weeks worked in year")
CENSUS_SPARSE = (
    "class of worker", "industry code", "occupation code", "education",
    "enrolled in edu inst last wk", "major industry code", "major occupation code", "race",
    "hispanic origin", "sex", "member of a labor union", "reason for unemployment",
    "full or part time employment stat", "tax filer status", "region of previous residence",
    "state of previous residence", "detailed household and family stat",
    "detailed household summary in household", "migration code-change in msa",
    "migration code-change in reg", "migration code-move within reg",
    "live in this house 1 year ago", "migration prev res in sunbelt", "family members under 18",
    "country of birth father", "country of birth mother", "country of birth self", "citizenship",
    "own business or self employed", "fill inc questionnaire for veterans admin",
    "veterans benefits", "year",
)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _text_label(positive: tuple[str, ...]) -> Any:
    """Map raw census strings (e.g. ' 50000+.', ' Never married') to 0/1; numbers pass through.
    A column of numbers with some text (e.g. 'yes' among 0/1) is returned as it is, for the
    reader's "non-numeric value" line: mapped as text, every "1" would silently become 0."""
    def conv(arr: np.ndarray) -> np.ndarray:
        if np.issubdtype(arr.dtype, np.number):
            return arr
        text = np.char.lower(np.char.strip(arr.astype(str)))
        if any(_is_number(str(v)) for v in np.unique(text)):
            return arr
        return np.isin(text, positive).astype(np.float64)
    return conv


CENSUS_LAYOUT = TableLayout(
    sparse=CENSUS_SPARSE,
    dense=CENSUS_DENSE,
    tasks=(TaskSpec("income", "income"), TaskSpec("never_married", "marital status")),
    label_maps={
        "income": _text_label(("50000+.", "50000+", ">50k", ">50k.")),
        "marital status": _text_label(("never married",)),
    },
)
CENSUS_FILES = ("census_income_{split}.csv", "census_income_{split}_sample.csv",
                "census-income_{split}.csv", "{split}.csv")
CENSUS_SOURCE = "the UCI Census-Income (KDD) data set, processed as in torch-rechub"


def _census_present(folder: Path) -> bool:
    return "train" in find_split_files(folder, CENSUS_FILES)


def _load_census(folder: Path | None, opts: dict[str, Any]) -> Dataset:
    assert folder is not None
    files = find_split_files(folder, CENSUS_FILES)
    return _tabular("census-income", folder, CENSUS_LAYOUT, files, opts)


register_dataset(DatasetInfo(
    name="census-income",
    description="US census (KDD): income > 50K and never-married, the MMoE paper's data",
    tasks=("income", "never_married"),
    source=CENSUS_SOURCE,
    loader=_load_census,
    options={"val_fraction": 0.1, "seed": 0},
    present=_census_present,
    get_data="put census_income_{train,val,test}.csv in ~/.cache/automtl/census-income or pass "
             "--data-dir",
))
