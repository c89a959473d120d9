"""Readers for the dermoscopy layouts a user has: each turns a folder into a :class:`Source`.

Formats (``detect_format`` tries them in this order):

- ``isic2017``: ``ISIC-2017_*_Part3_GroundTruth.csv`` (``image_id,melanoma,seborrheic_keratosis``,
  0/1; nevus = both 0) with images anywhere below; ``*_superpixels.png`` are skipped.
  group = image_id (2017 has no lesion id).
- ``ham10000``: ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``); dx mel/nv/bkl ->
  melanoma/nevus/seborrheic_keratosis, anything else -> other. group = lesion_id.
- ``isic_cli``: ``metadata.csv`` with ``isic_id`` and ``diagnosis*`` columns (``isic image
  download``). A diagnosis column mentioning Melanoma / Nevus / Seborrheic keratosis picks the
  class (in that priority), else other. group = lesion_id when present, else isic_id.
- ``class_folders``: one subfolder per class; class_names = sorted subfolder names; group = stem.
- ``flat``: images directly in the folder; unlabeled, no classes.

Labels index into ``Source.class_names`` (``CLASSES`` for the three dermoscopy sources).
Problems a user should see (missing images, rejected ids, ...) go to ``Source.problems`` as
``(where, "<category>: detail")`` and end up in the cache's report.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import os

from melano_tf.data.records import CLASSES, UNLABELED, Record
from melano_tf.errors import UserError

FORMATS = ("isic2017", "ham10000", "isic_cli", "class_folders", "flat")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
ISIC2017_CSV = "ISIC-2017_*_Part3_GroundTruth.csv"
HAM_CSV = "HAM10000_metadata.csv"
ISIC_CLI_CSV = "metadata.csv"
HAM_DX = {"mel": "melanoma", "nv": "nevus", "bkl": "seborrheic_keratosis"}
# isic-cli diagnosis text -> class, first match wins (case-insensitive substring).
ISIC_CLI_DIAGNOSES = (("melanoma", "melanoma"), ("nevus", "nevus"),
                      ("seborrheic keratosis", "seborrheic_keratosis"))
# Files next to ISIC images that are not lesion images.
_NOT_LESION_SUFFIXES = ("_superpixels", "_segmentation")


@dataclasses.dataclass
class Source:
    """What a reader found: records plus what it could not use."""

    format: str
    root: str
    records: list[Record]
    class_names: tuple[str, ...]
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk_images(root: str) -> list[str]:
    """All image files below root (hidden folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(os.path.join(dirpath, f) for f in filenames if _is_image(f))
    return sorted(found)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _index_by_stem(paths: list[str], problems: list) -> dict[str, str]:
    index: dict[str, str] = {}
    for p in paths:
        s = _stem(p)
        if s in index:
            problems.append((p, f"duplicate_id: same id as {index[s]}"))
        else:
            index[s] = p
    return index


def _bad_id(image_id: str) -> str | None:
    if not image_id:
        return "empty id"
    if "/" in image_id or "\\" in image_id or ".." in image_id or "\x00" in image_id:
        return "id contains a path separator or '..'"
    if os.path.isabs(image_id) or (len(image_id) > 1 and image_id[1] == ":"):
        return "absolute path as id"
    return None


def _one_line(text: str) -> str:
    """CSV text for a one-line message (a quoted field may hold line breaks)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _read_csv(path: str, required: tuple[str, ...] = (), any_prefix: str | None = None):
    """Yields (line number, row dict) of a CSV (BOM and CRLF tolerated); UserError if malformed."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: empty CSV, expected a header row")
            header = [h.strip() for h in header]
            missing = [c for c in required if c not in header]
            if missing:
                raise UserError(f"{path}: row 1: missing column(s) {', '.join(missing)} "
                                f"(header: {_one_line(','.join(header))})")
            if any_prefix and not any(h.startswith(any_prefix) for h in header):
                raise UserError(f"{path}: row 1: no {any_prefix}* column (header: {_one_line(','.join(header))})")
            rows = []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise UserError(f"{path}: row {reader.line_num}: {len(row)} fields, "
                                    f"header has {len(header)}")
                rows.append((reader.line_num, dict(zip(header, (c.strip() for c in row)))))
            return rows
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"{path}: malformed CSV: {e}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None


def _where(csv_path: str, line: int, image_id: str) -> str:
    return f"{csv_path}:row {line} ({_one_line(image_id)})"


def _float01(csv_path: str, line: int, column: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise UserError(f"{csv_path}: row {line}: {column}={value!r} is not a number") from None
    if v != v:  # NaN
        raise UserError(f"{csv_path}: row {line}: {column}={value!r} is not a number")
    return v


def _find(root: str, pattern: str, max_depth: int = 0) -> list[str]:
    """Files in root (and up to max_depth folders below) whose name matches pattern."""
    out = []
    root = os.path.abspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = dirpath[len(root):].count(os.sep)
        if depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in filenames if fnmatch.fnmatchcase(f, pattern))
    return sorted(out)


def _csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def detect_format(data_dir: str) -> str:
    """Names the layout of data_dir: one of FORMATS. UserError if it is missing or has no images."""
    _check_dir(data_dir)
    if _find(data_dir, ISIC2017_CSV):
        return "isic2017"
    if os.path.isfile(os.path.join(data_dir, HAM_CSV)):
        return "ham10000"
    meta = os.path.join(data_dir, ISIC_CLI_CSV)
    if os.path.isfile(meta) and "isic_id" in _csv_header(meta):
        return "isic_cli"
    entries = sorted(os.listdir(data_dir))
    if any(_is_image(e) and os.path.isfile(os.path.join(data_dir, e)) for e in entries):
        return "flat"
    for e in entries:
        sub = os.path.join(data_dir, e)
        if not e.startswith(".") and os.path.isdir(sub) and _walk_images(sub):
            return "class_folders"
    raise UserError(f"{data_dir}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")


def _usable_id(image_id: str, where: str, seen: set, index: dict, problems: list) -> bool:
    """False (and a reported problem) for a rejected, repeated or missing CSV id; marks it seen."""
    bad = _bad_id(image_id)
    if bad:
        problems.append((where, f"rejected_id: {bad}"))
        return False
    if image_id in seen:
        problems.append((where, "duplicate_id: already listed"))
        return False
    seen.add(image_id)
    if image_id not in index:
        problems.append((where, "missing: no image file for this id"))
        return False
    return True


def _check_dir(data_dir: str) -> None:
    if not data_dir or not os.path.isdir(data_dir):
        raise UserError(f"{data_dir}: no such directory")


def _read_isic2017(root: str) -> Source:
    problems: list = []
    images = [p for p in _walk_images(root) if not _stem(p).endswith(_NOT_LESION_SUFFIXES)]
    index = _index_by_stem(images, problems)
    records, seen = [], set()
    for csv_path in _find(root, ISIC2017_CSV):
        for line, row in _read_csv(csv_path, ("image_id", "melanoma", "seborrheic_keratosis")):
            image_id = row["image_id"]
            where = _where(csv_path, line, image_id)
            mel = _float01(csv_path, line, "melanoma", row["melanoma"])
            sk = _float01(csv_path, line, "seborrheic_keratosis", row["seborrheic_keratosis"])
            if not _usable_id(image_id, where, seen, index, problems):
                continue
            name = "melanoma" if mel >= 0.5 else "seborrheic_keratosis" if sk >= 0.5 else "nevus"
            records.append(Record(index[image_id], CLASSES.index(name), image_id, image_id))
    for stem, path in index.items():
        if stem not in seen:
            problems.append((path, "unlabeled: not in any ground-truth CSV"))
    return Source("isic2017", root, records, CLASSES, problems)


def _read_ham10000(root: str) -> Source:
    problems: list = []
    index = _index_by_stem(_walk_images(root), problems)
    csv_path = os.path.join(root, HAM_CSV)
    records, seen = [], set()
    for line, row in _read_csv(csv_path, ("lesion_id", "image_id", "dx")):
        image_id = row["image_id"]
        where = _where(csv_path, line, image_id)
        if not _usable_id(image_id, where, seen, index, problems):
            continue
        name = HAM_DX.get(row["dx"].lower(), "other")
        records.append(Record(index[image_id], CLASSES.index(name), row["lesion_id"] or image_id, image_id))
    return Source("ham10000", root, records, CLASSES, problems)


def _isic_cli_class(row: dict, columns: list[str]) -> str:
    texts = [row[c].lower() for c in columns if row.get(c)]
    for needle, name in ISIC_CLI_DIAGNOSES:
        if any(needle in t for t in texts):
            return name
    return "other"


def _read_isic_cli(root: str) -> Source:
    problems: list = []
    index = _index_by_stem(_walk_images(root), problems)
    csv_path = os.path.join(root, ISIC_CLI_CSV)
    rows = _read_csv(csv_path, ("isic_id",), any_prefix="diagnosis")
    columns = [c for c in (rows[0][1] if rows else {}) if c.startswith("diagnosis")]
    records, seen = [], set()
    for line, row in rows:
        image_id = row["isic_id"]
        where = _where(csv_path, line, image_id)
        if not _usable_id(image_id, where, seen, index, problems):
            continue
        label = CLASSES.index(_isic_cli_class(row, columns))
        records.append(Record(index[image_id], label, row.get("lesion_id") or image_id, image_id))
    return Source("isic_cli", root, records, CLASSES, problems)


def _read_class_folders(root: str) -> Source:
    names, per_class = [], []
    for e in sorted(os.listdir(root)):
        sub = os.path.join(root, e)
        if e.startswith(".") or not os.path.isdir(sub):
            continue
        imgs = _walk_images(sub)
        if imgs:
            names.append(e)
            per_class.append(imgs)
    records = [Record(p, label, _stem(p), _stem(p))
               for label, imgs in enumerate(per_class) for p in imgs]
    return Source("class_folders", root, records, tuple(names), [])


def _read_flat(root: str) -> Source:
    paths = sorted(os.path.join(root, e) for e in os.listdir(root)
                   if _is_image(e) and os.path.isfile(os.path.join(root, e)))
    return Source("flat", root, [Record(p, UNLABELED, _stem(p), _stem(p)) for p in paths], (), [])


_READERS = {"isic2017": _read_isic2017, "ham10000": _read_ham10000, "isic_cli": _read_isic_cli,
            "class_folders": _read_class_folders, "flat": _read_flat}


def read_source(data_dir: str, data_format: str = "auto", classes=None) -> Source:
    """Reads data_dir in data_format ("auto" detects it), keeping only ``classes`` when given.

    classes: class names (e.g. ["melanoma"]); labels keep their index into class_names.
    Raises UserError (one line naming the path) for a missing folder, a malformed CSV, an unknown
    class or a source without any image.
    """
    _check_dir(data_dir)
    root = os.path.abspath(data_dir)
    if data_format in (None, "", "auto"):
        data_format = detect_format(root)
    if data_format not in _READERS:
        raise UserError(f"--data_format={data_format}: choose one of auto, {', '.join(FORMATS)}")
    source = _READERS[data_format](root)
    if not source.records:
        detail = f" ({len(source.problems)} problems, e.g. {source.problems[0][0]}: " \
                 f"{source.problems[0][1]})" if source.problems else ""
        raise UserError(f"{root}: no images found in {data_format} layout{detail}")
    if classes:
        if isinstance(classes, str):
            classes = [c for c in classes.split(",") if c]
        unknown = [c for c in classes if c not in source.class_names]
        if unknown:
            valid = ", ".join(source.class_names) or "none (unlabeled images)"
            raise UserError(f"--classes: unknown class {', '.join(unknown)} for {root}; valid: {valid}")
        keep = {source.class_names.index(c) for c in classes}
        source.records = [r for r in source.records if r.label in keep]
        if not source.records:
            raise UserError(f"{root}: no images of class {', '.join(classes)}")
    return source
