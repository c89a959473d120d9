"""Format detection: the file names that mark each layout, and :func:`detect_format`."""

from __future__ import annotations

import os

from melano_tf.data.readers.common import (
    IMAGE_EXTENSIONS, canonical_class, check_dir, csv_header, find_files, inside, is_image, walk_images)
from melano_tf.errors import UserError

FORMATS = ("isic2017", "isic2019", "isic2020", "ham10000", "isic_cli", "ph2", "class_folders", "flat")
ISIC2017_CSV = "ISIC-2017_*_Part3_GroundTruth.csv"
ISIC2019_CSV = "ISIC_2019_Training_GroundTruth*.csv"
ISIC2020_CSVS = ("train.csv", "ISIC_2020_Training_GroundTruth*.csv")
PH2_TXT = "PH2_dataset.txt"
PH2_XLSX = "PH2_dataset.xlsx"
HAM_CSV = "HAM10000_metadata.csv"
ISIC_CLI_CSV = "metadata.csv"


def isic2020_csv(root: str) -> str | None:
    for pattern in ISIC2020_CSVS:
        for path in find_files(root, pattern, max_depth=1):
            header = csv_header(path)
            if "image_name" in header and ("target" in header or "benign_malignant" in header):
                return path
    return None


def ph2_files(root: str) -> tuple[list[str], list[str]]:
    return find_files(root, PH2_TXT, max_depth=1), find_files(root, PH2_XLSX, max_depth=1)


def _image_subfolders(data_dir: str) -> list[str]:
    out = []
    for e in sorted(os.listdir(data_dir)):
        sub = os.path.join(data_dir, e)
        if not e.startswith(".") and os.path.isdir(sub) and inside(sub, os.path.realpath(data_dir)) \
                and walk_images(sub, base=data_dir):
            out.append(e)
    return out


def _looks_like(data_dir: str, entries: list[str]) -> str:
    """A guess at an unrecognised layout, for the error message."""
    names = " ".join(entries).lower()
    for needle, what in (("isic_2019", "an ISIC 2019 download without ISIC_2019_Training_GroundTruth.csv"),
                         ("isic_2020", "an ISIC 2020 download without train.csv"),
                         ("ham10000", "HAM10000 without HAM10000_metadata.csv"),
                         ("isic-2017", "ISIC 2017 without ISIC-2017_*_Part3_GroundTruth.csv"),
                         ("ph2", "PH2 without PH2_dataset.txt"), ("isic", "an ISIC download")):
        if needle in names:
            return what
    return "an unknown layout"


def detect_format(data_dir: str) -> str:
    """Names the layout of data_dir: one of FORMATS. UserError if it is missing, has no images, or
    is a single unrecognised image subfolder (which auto-detection never reads as one class)."""
    check_dir(data_dir)
    if find_files(data_dir, ISIC2017_CSV):
        return "isic2017"
    if find_files(data_dir, ISIC2019_CSV, max_depth=1):
        return "isic2019"
    if os.path.isfile(os.path.join(data_dir, HAM_CSV)):
        return "ham10000"
    meta = os.path.join(data_dir, ISIC_CLI_CSV)
    if os.path.isfile(meta) and "isic_id" in csv_header(meta):
        return "isic_cli"
    if isic2020_csv(data_dir):
        return "isic2020"
    txt, xlsx = ph2_files(data_dir)
    if txt:
        return "ph2"
    if xlsx:
        raise UserError(f"{xlsx[0]}: PH2 with only the .xlsx table; put PH2_dataset.txt (in the same "
                        "PH2 download) beside it")
    entries = sorted(os.listdir(data_dir))
    if any(is_image(e) and os.path.isfile(os.path.join(data_dir, e)) for e in entries):
        return "flat"
    subs = _image_subfolders(data_dir)
    if len(subs) == 1 and canonical_class(subs[0]) is None:
        csvs = [e for e in entries if e.lower().endswith((".csv", ".txt", ".xlsx", ".json"))]
        beside = f" beside {', '.join(csvs[:3])}" if csvs else ""
        raise UserError(
            f"{data_dir}: one image folder {subs[0]!r}{beside} looks like {_looks_like(data_dir, entries)}, "
            f"not a known layout; give --data_format (one of {', '.join(FORMATS)}), e.g. "
            f"--data_format=class_folders to read it as a single class {subs[0]!r}")
    if subs:
        return "class_folders"
    raise UserError(f"{data_dir}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
