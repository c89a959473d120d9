"""Readers of the other layouts: PH2, HAM10000, one folder per class, and a flat unlabeled folder."""

from __future__ import annotations

import os
import re

from melano_tf.data.readers.common import (
    Source, canonical_class, csv_where, diagnosis_class, file_stem, index_by_stem, inside, is_image, read_csv,
    usable_id, walk_images)
from melano_tf.data.readers.detect import HAM_CSV, PH2_TXT, ph2_files
from melano_tf.data.records import CLASSES, UNLABELED, Record
from melano_tf.errors import UserError

PH2_CLINICAL = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}
HAM_DX = {"mel": "melanoma", "nv": "nevus", "bkl": "seborrheic_keratosis"}


def read_ph2(root: str, follow: bool = False) -> Source:
    problems: list = []
    txt = ph2_files(root)[0]
    if not txt:
        raise UserError(f"{root}: no {PH2_TXT} (PH2)")
    txt = txt[0]
    images = [p for p in walk_images(root, problems, follow_outside=follow)
              if os.path.basename(os.path.dirname(p)).lower().endswith("_dermoscopic_image")]
    index = index_by_stem(images, problems)
    try:
        with open(txt, encoding="utf-8-sig", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UserError(f"{txt}: cannot read: {e.strerror or e}") from None
    name_col, clin_col = 1, 3
    records, seen = [], set()
    for n, text in enumerate(lines, 1):
        if not text.lstrip().startswith("||"):
            continue
        cells = [c.strip() for c in text.strip().split("||")]
        lowered = [c.lower() for c in cells]
        if "name" in lowered and any("clinical" in c for c in lowered):
            name_col = lowered.index("name")
            clin_col = next(i for i, c in enumerate(lowered) if "clinical" in c)
            continue
        if len(cells) <= max(name_col, clin_col) or not re.fullmatch(r"IMD\d+", cells[name_col]):
            continue
        image_id, code = cells[name_col], cells[clin_col]
        where = f"{txt}:line {n} ({image_id})"
        if code not in PH2_CLINICAL:
            problems.append((where, f"unlabeled: clinical diagnosis {code!r}, expected 0, 1 or 2"))
            continue
        if not usable_id(image_id, where, seen, index, problems):
            continue
        diagnosis = PH2_CLINICAL[code]
        records.append(Record(index[image_id], CLASSES.index(diagnosis_class(diagnosis)), image_id,
                              image_id, diagnosis))
    if not seen:
        raise UserError(f"{txt}: no '|| IMDxxx || ... ||' rows with a clinical diagnosis found")
    return Source("ph2", root, records, CLASSES, problems)


def read_ham10000(root: str, follow: bool = False) -> Source:
    problems: list = []
    index = index_by_stem(walk_images(root, problems, follow_outside=follow), problems)
    csv_path = os.path.join(root, HAM_CSV)
    records, seen = [], set()
    for line, row in read_csv(csv_path, ("lesion_id", "image_id", "dx")):
        image_id = row["image_id"]
        where = csv_where(csv_path, line, image_id)
        if not usable_id(image_id, where, seen, index, problems):
            continue
        name = HAM_DX.get(row["dx"].lower(), "other")
        records.append(Record(index[image_id], CLASSES.index(name), row["lesion_id"] or image_id, image_id,
                              row["dx"]))
    return Source("ham10000", root, records, CLASSES, problems)


def read_class_folders(root: str, follow: bool = False) -> Source:
    problems: list = []
    base = os.path.realpath(root)
    folders = []  # (folder name, class name, images)
    for e in sorted(os.listdir(root)):
        sub = os.path.join(root, e)
        if e.startswith(".") or not os.path.isdir(sub):
            continue
        if not follow and not inside(sub, base):
            problems.append((sub, f"outside_data_dir: symlink to {os.path.realpath(sub)} (not followed)"))
            continue
        imgs = walk_images(sub, problems, base=base if not follow else sub, follow_outside=follow)
        if imgs:
            folders.append((e, canonical_class(e) or e, imgs))
    names = tuple(sorted({name for _, name, _ in folders}))
    records = [Record(p, names.index(name), file_stem(p), file_stem(p), folder)
               for folder, name, imgs in folders for p in imgs]
    return Source("class_folders", root, records, names, problems)


def read_flat(root: str, follow: bool = False) -> Source:
    problems: list = []
    base = os.path.realpath(root)
    paths = []
    for e in sorted(os.listdir(root)):
        p = os.path.join(root, e)
        if not is_image(e) or not os.path.isfile(p):
            continue
        if not follow and not inside(p, base):
            problems.append((p, f"outside_data_dir: symlink to {os.path.realpath(p)} (not followed)"))
            continue
        paths.append(p)
    return Source("flat", root, [Record(p, UNLABELED, file_stem(p), file_stem(p)) for p in paths], (), problems)
