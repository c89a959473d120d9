"""Readers of the ISIC layouts: the 2017, 2019 and 2020 challenge downloads and ``isic image download``."""

from __future__ import annotations

import os

from melano_tf.data import decode
from melano_tf.data.readers.common import (
    ISIC_CLI_DIAGNOSES, Source, canonical_class, csv_where, diagnosis_class, file_stem, find_files, float01,
    index_by_stem, read_csv, usable_id, walk_images)
from melano_tf.data.readers.detect import ISIC2017_CSV, ISIC2019_CSV, ISIC_CLI_CSV, isic2020_csv
from melano_tf.data.records import CLASSES, Record
from melano_tf.errors import UserError

ISIC2019_META = "ISIC_2019_Training_Metadata*.csv"
ISIC2019_COLUMNS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
# Files next to ISIC images that are not lesion images.
_NOT_LESION_SUFFIXES = ("_superpixels", "_segmentation")


def read_isic2017(root: str, follow: bool = False) -> Source:
    problems: list = []
    images = [p for p in walk_images(root, problems, follow_outside=follow)
              if not file_stem(p).endswith(_NOT_LESION_SUFFIXES)]
    index = index_by_stem(images, problems)
    records, seen = [], set()
    for csv_path in find_files(root, ISIC2017_CSV):
        for line, row in read_csv(csv_path, ("image_id", "melanoma", "seborrheic_keratosis")):
            image_id = row["image_id"]
            where = csv_where(csv_path, line, image_id)
            mel = float01(csv_path, line, "melanoma", row["melanoma"])
            sk = float01(csv_path, line, "seborrheic_keratosis", row["seborrheic_keratosis"])
            if not usable_id(image_id, where, seen, index, problems):
                continue
            name = "melanoma" if mel >= 0.5 else "seborrheic_keratosis" if sk >= 0.5 else "nevus"
            records.append(Record(index[image_id], CLASSES.index(name), image_id, image_id, name))
    for stem, path in index.items():
        if stem not in seen:
            problems.append((path, "unlabeled: not in any ground-truth CSV"))
    return Source("isic2017", root, records, CLASSES, problems)


def read_isic2019(root: str, follow: bool = False) -> Source:
    problems: list = []
    images = [p for p in walk_images(root, problems, follow_outside=follow)
              if not file_stem(p).endswith(_NOT_LESION_SUFFIXES)]
    index = index_by_stem(images, problems)
    lesions: dict[str, str] = {}
    for meta in find_files(root, ISIC2019_META, max_depth=1):
        for _, row in read_csv(meta, ("image",)):
            if row.get("lesion_id"):
                lesions[row["image"]] = row["lesion_id"]
    records, seen = [], set()
    csvs = find_files(root, ISIC2019_CSV, max_depth=1)
    if not csvs:
        raise UserError(f"{root}: no {ISIC2019_CSV.replace('*', '')} (ISIC 2019 ground truth)")
    for csv_path in csvs:
        rows = read_csv(csv_path, ("image",))
        header = list(rows[0][1]) if rows else []
        columns = [c for c in ISIC2019_COLUMNS if c in header]
        if rows and not columns:
            raise UserError(f"{csv_path}: row 1: none of the diagnosis columns {', '.join(ISIC2019_COLUMNS)}")
        for line, row in rows:
            image_id = row["image"]
            where = csv_where(csv_path, line, image_id)
            values = {c: float01(csv_path, line, c, row[c]) for c in columns}
            if not usable_id(image_id, where, seen, index, problems):
                continue
            hot = [c for c in columns if values[c] >= 0.5]
            if len(hot) != 1:
                problems.append((where, f"unlabeled: {len(hot)} diagnosis columns set, expected one"))
                continue
            name = canonical_class(hot[0]) or "other"
            records.append(Record(index[image_id], CLASSES.index(name), lesions.get(image_id) or image_id,
                                  image_id, hot[0]))
    return Source("isic2019", root, records, CLASSES, problems)


def read_isic2020(root: str, follow: bool = False) -> Source:
    problems: list = []
    csv_path = isic2020_csv(root)
    if csv_path is None:
        raise UserError(f"{root}: no train.csv with image_name and target columns (ISIC 2020)")
    by_stem: dict[str, list[str]] = {}
    for p in walk_images(root, problems, follow_outside=follow):
        by_stem.setdefault(file_stem(p), []).append(p)
    index: dict[str, str] = {}
    for stem, paths in by_stem.items():
        # Kaggle's layout holds each image twice: jpeg/train/X.jpg and train/X.dcm; take the JPEG.
        plain = [p for p in paths if not p.lower().endswith(decode.DICOM_EXTENSIONS)] or paths
        index[stem] = plain[0]
        for p in plain[1:]:
            problems.append((p, f"duplicate_id: same id as {plain[0]}"))
    records, seen = [], set()
    for line, row in read_csv(csv_path, ("image_name",)):
        image_id = row["image_name"]
        where = csv_where(csv_path, line, image_id)
        if not usable_id(image_id, where, seen, index, problems):
            continue
        diagnosis = row.get("diagnosis") or row.get("benign_malignant") or ""
        name = diagnosis_class(diagnosis) if diagnosis else "other"
        if row.get("target", "").strip() in ("1", "1.0") or row.get("benign_malignant", "").lower() == "malignant":
            name = "melanoma"  # every malignant lesion of ISIC 2020 is a melanoma
        group = row.get("patient_id") or row.get("lesion_id") or image_id
        records.append(Record(index[image_id], CLASSES.index(name), group, image_id, diagnosis))
    return Source("isic2020", root, records, CLASSES, problems)


def _isic_cli_class(row: dict, columns: list[str]) -> str:
    texts = [row[c].lower() for c in columns if row.get(c)]
    for needle, name in ISIC_CLI_DIAGNOSES:
        if any(needle in t for t in texts):
            return name
    return "other"


def read_isic_cli(root: str, follow: bool = False) -> Source:
    problems: list = []
    index = index_by_stem(walk_images(root, problems, follow_outside=follow), problems)
    csv_path = os.path.join(root, ISIC_CLI_CSV)
    rows = read_csv(csv_path, ("isic_id",), any_prefix="diagnosis")
    columns = [c for c in (rows[0][1] if rows else {}) if c.startswith("diagnosis")]
    records, seen = [], set()
    for line, row in rows:
        image_id = row["isic_id"]
        where = csv_where(csv_path, line, image_id)
        if not usable_id(image_id, where, seen, index, problems):
            continue
        label = CLASSES.index(_isic_cli_class(row, columns))
        diagnosis = next((row[c] for c in reversed(columns) if row.get(c)), "")
        records.append(Record(index[image_id], label, row.get("lesion_id") or image_id, image_id, diagnosis))
    return Source("isic_cli", root, records, CLASSES, problems)
