"""Fixture generators: real-format data files written from scratch (importable by any test).

- `write_raw_ali_ccp`: the raw Tianchi release (``sample_skeleton_*.csv`` +
  ``common_features_*.csv`` with ``\\x01``/``\\x02``/``\\x03`` separators), including multi-valued
  behaviour fields and click=0/buy=1 noise rows; returns the rows it wrote so tests can check
  exact values after `automtl data prepare`.
- `write_processed`: processed CSV files of the ali-ccp / aliexpress / census-income layouts.
- `break_csv`: turn a good processed CSV into one with a specific defect.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

USER_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129")
SEQ_FIELDS = ("109_14", "110_14", "127_14", "150_14")
ITEM_FIELDS = ("205", "206", "207", "210", "216", "508", "509", "702", "853", "301")
VALUED = ("508", "509", "702", "853")  # their value becomes the dense D<field>

# processed column order of the public release
ALI_CCP_HEADER = ["click", "purchase", "101", "121", "122", "124", "125", "126", "127", "128",
                  "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
                  "109_14", "110_14", "127_14", "150_14", "D109_14", "D110_14", "D127_14",
                  "D150_14", "D508", "D509", "D702", "D853"]
ALIEXPRESS_HEADER = (["search_id"] + [f"categorical_{i}" for i in range(1, 17)]
                     + [f"numerical_{i}" for i in range(1, 64)] + ["click", "conversion"])
CENSUS_DENSE = ("age", "wage per hour", "capital gains", "capital losses", "divdends from stocks",
                "num persons worked for employer", "weeks worked in year")


@dataclass
class RawRow:
    """One sample the raw files describe (user fields joined in), as prepare should see it."""

    click: int
    buy: int
    ids: dict[str, str]  # single-valued field -> raw feature id
    seqs: dict[str, list[str]]  # multi-valued field -> raw feature ids, in file order
    seq_values: dict[str, list[float]]
    values: dict[str, float]  # 508/509/702/853 -> value


@dataclass
class RawAliCcp:
    """What `write_raw_ali_ccp` wrote."""

    folder: Path
    rows: dict[str, list[RawRow]] = field(default_factory=dict)  # kept rows, file order
    noise: dict[str, int] = field(default_factory=dict)  # click=0 buy=1 rows written
    lines: dict[str, int] = field(default_factory=dict)  # file name -> lines


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _entries(pairs: list[tuple[str, str, float]]) -> str:
    return "\x01".join(f"{f}\x02{fid}\x03{v:g}" for f, fid, v in pairs)


def write_raw_ali_ccp(
    folder: Path,
    n_train: int = 300,
    n_test: int = 100,
    n_users: int = 40,
    n_items: int = 60,
    seq_max: int = 6,
    noise_every: int = 25,
    seed: int = 0,
    keep_rows: bool = True,
) -> RawAliCcp:
    """Write raw Tianchi-format Ali-CCP files; test users/items are partly unseen in train."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = RawAliCcp(folder=folder)
    for split, n_rows in (("train", n_train), ("test", n_test)):
        # train users/items 0..n-1; test adds new ones (unseen -> OOV after prepare)
        extra = 0 if split == "train" else max(2, n_users // 4)
        users = {}
        lines = []
        for u in range(n_users + extra):
            uid = u if split == "train" or u < n_users else 10_000 + u
            md5 = _md5(f"user{uid}")
            ids = {f: str(1000 * (k + 1) + (uid if f == "101" else uid % (3 + k)))
                   for k, f in enumerate(USER_FIELDS)}
            seqs, seq_values = {}, {}
            for k, f in enumerate(SEQ_FIELDS):
                length = rnd.randint(1, seq_max)
                pool = 20 if split == "train" else 26  # test sequences hold unseen ids too
                seqs[f] = [str(500_000 + 1000 * k + rnd.randrange(pool)) for _ in range(length)]
                seq_values[f] = [round(rnd.random(), 4) for _ in range(length)]
            pairs = [(f, ids[f], 1.0) for f in USER_FIELDS]
            for f in SEQ_FIELDS:  # multi-valued: the field id repeats
                pairs += [(f, fid, v) for fid, v in zip(seqs[f], seq_values[f])]
            rnd.shuffle(pairs)  # real files do not group entries by field
            seqs = {f: [fid for g, fid, _ in pairs if g == f] for f in SEQ_FIELDS}
            seq_values = {f: [v for g, _, v in pairs if g == f] for f in SEQ_FIELDS}
            lines.append(f"{md5},{len(pairs)},{_entries(pairs)}\n")
            users[md5] = (ids, seqs, seq_values)
        (folder / f"common_features_{split}.csv").write_text("".join(lines), encoding="latin-1")
        out.lines[f"common_features_{split}.csv"] = len(lines)
        md5s = list(users)
        rows: list[RawRow] = []
        noise = 0
        with (folder / f"sample_skeleton_{split}.csv").open("w", encoding="latin-1") as fh:
            for i in range(n_rows):
                md5 = md5s[rnd.randrange(len(md5s))]
                is_noise = noise_every > 0 and i % noise_every == noise_every - 1
                if is_noise:
                    click, buy = 0, 1
                    noise += 1
                else:
                    click = int(rnd.random() < 0.3)
                    buy = int(click and rnd.random() < 0.3)
                item = rnd.randrange(n_items + (0 if split == "train" else 10))
                ids = {f: str(100_000 * (k + 2) + item % max(2, n_items - 3 * k)) for k, f in
                       enumerate(ITEM_FIELDS)}
                if split == "test" and item >= n_items:
                    ids["205"] = str(999_000 + item)  # a new item id
                values = {f: round(rnd.random(), 4) for f in VALUED}
                pairs = [(f, ids[f], values.get(f, 1.0)) for f in ITEM_FIELDS]
                fh.write(f"{i},{click},{buy},{md5},{len(pairs)},{_entries(pairs)}\n")
                if not is_noise and keep_rows:
                    uids, seqs, seq_values = users[md5]
                    rows.append(RawRow(click, buy, {**uids, **ids}, seqs, seq_values, values))
        out.rows[split] = rows
        out.noise[split] = noise
        out.lines[f"sample_skeleton_{split}.csv"] = n_rows
    return out


def _ali_ccp_row(rnd: random.Random) -> list[object]:
    click = int(rnd.random() < 0.2)
    buy = int(click and rnd.random() < 0.3)
    sparse = [rnd.randrange(1, 30) for _ in range(23)]
    dense = [round(rnd.random(), 4) for _ in range(8)]
    return [click, buy, *sparse, *dense]


def _aliexpress_row(rnd: random.Random, i: int) -> list[object]:
    click = int(rnd.random() < 0.3)
    conv = int(click and rnd.random() < 0.2)
    return [i, *[rnd.randrange(0, 12) for _ in range(16)],
            *[round(rnd.random(), 5) for _ in range(63)], click, conv]


CENSUS_HEADER = [
    "age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
    "enrolled in edu inst last wk", "marital status", "major industry code",
    "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
    "reason for unemployment", "full or part time employment stat", "capital gains",
    "capital losses", "divdends from stocks", "tax filer status", "region of previous residence",
    "state of previous residence", "detailed household and family stat",
    "detailed household summary in household", "migration code-change in msa",
    "migration code-change in reg", "migration code-move within reg",
    "live in this house 1 year ago", "migration prev res in sunbelt",
    "num persons worked for employer", "family members under 18", "country of birth father",
    "country of birth mother", "country of birth self", "citizenship",
    "own business or self employed", "fill inc questionnaire for veterans admin",
    "veterans benefits", "weeks worked in year", "year", "income",
]  # the processed census-income layout (torch-rechub), in file order


def _census_row(rnd: random.Random, header: list[str]) -> list[object]:
    row: list[object] = []
    for name in header:
        if name in ("income", "marital status"):
            row.append(int(rnd.random() < 0.3))
        elif name in CENSUS_DENSE:
            row.append(round(rnd.random(), 4))
        else:
            row.append(rnd.randrange(0, 9))
    return row


def write_processed(folder: Path, layout: str = "ali-ccp", rows: dict[str, int] | None = None,
                    seed: int = 0, pattern: str = "{split}.csv",
                    noise_rows: int = 0) -> dict[str, Path]:
    """Write processed CSVs of `layout` (split -> rows); `noise_rows` purchase-without-click rows
    are appended to train. Returns split -> path."""
    rnd = random.Random(seed)
    rows = rows or {"train": 200, "val": 50, "test": 50}
    folder.mkdir(parents=True, exist_ok=True)
    header = {"ali-ccp": ALI_CCP_HEADER, "aliexpress": ALIEXPRESS_HEADER,
              "census-income": CENSUS_HEADER}[layout]
    paths = {}
    for split, n in rows.items():
        p = folder / pattern.format(split=split)
        with p.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            for i in range(n):
                if layout == "ali-ccp":
                    w.writerow(_ali_ccp_row(rnd))
                elif layout == "aliexpress":
                    w.writerow(_aliexpress_row(rnd, i))
                else:
                    w.writerow(_census_row(rnd, header))
            if split == "train":
                for _ in range(noise_rows):
                    r = _ali_ccp_row(rnd) if layout == "ali-ccp" else _aliexpress_row(rnd, 0)
                    r[header.index("click")] = 0
                    r[header.index("purchase" if layout == "ali-ccp" else "conversion")] = 1
                    w.writerow(r)
        paths[split] = p
    return paths


def break_csv(path: Path, defect: str, column: str = "205", line: int = 5) -> None:
    """Give a processed CSV one defect: missing_column, extra_column, nonbinary_label, nan_id,
    nan_text_id, empty, truncated, not_utf8."""
    with path.open(newline="") as fh:
        table = list(csv.reader(fh))
    header, body = table[0], table[1:]
    if defect == "missing_column":
        j = header.index(column)
        table = [r[:j] + r[j + 1:] for r in table]
    elif defect == "extra_column":
        table = [header + ["surprise"]] + [r + ["1"] for r in body]
    elif defect == "nonbinary_label":
        body[line - 2][header.index("click")] = "2"
    elif defect == "nan_id":
        body[line - 2][header.index(column)] = ""
    elif defect == "nan_text_id":
        body[line - 2][header.index(column)] = "nan"
    elif defect == "empty":
        table = [header]
    elif defect == "truncated":
        text = "\n".join(",".join(r) for r in table) + "\n"
        path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])
        return
    elif defect == "not_utf8":
        path.write_bytes(b"\xff\xfe\x00c\x00l" + b"\x00" * 64)
        return
    else:
        raise ValueError(defect)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(table)
