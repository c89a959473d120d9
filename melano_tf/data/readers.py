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
- ``isic2019``: ``ISIC_2019_Training_GroundTruth.csv`` (``image`` + one-hot MEL, NV, BCC, AK,
  BKL, DF, VASC, SCC, UNK); MEL/NV/BKL -> melanoma/nevus/seborrheic_keratosis, the rest -> other.
  group = ``lesion_id`` of ``ISIC_2019_Training_Metadata.csv`` (else the image id).
- ``isic2020``: ``train.csv`` or ``ISIC_2020_Training_GroundTruth*.csv`` (``image_name``,
  ``patient_id``, ``diagnosis``, ``benign_malignant``, ``target``); images as JPEG (``jpeg/train/``,
  ``train/``) or DICOM (JPEG preferred when both). diagnosis melanoma / nevus / seborrheic
  keratosis picks the class (target=1 is melanoma), else other. group = ``patient_id``.
- ``ph2``: ``PH2_dataset.txt`` (``||``-separated; clinical diagnosis 0/1/2 = common nevus /
  atypical nevus / melanoma -> nevus, nevus, melanoma), images
  ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` (masks beside them ignored).
  group = image (one lesion per image).
- ``class_folders``: one subfolder per class. Folder names go through ``CLASS_ALIASES``
  (case-insensitive: ``MEL/``, ``Melanoma/``, ``mel/`` are all melanoma); names not in the table
  stay classes of their own; class_names = the sorted resulting names; group = stem. The
  folder name is kept as the record's diagnosis. Auto-detection refuses a single image subfolder
  that is not a known class name (e.g. an unrecognised download with CSVs beside one image
  folder): ``--data_format=class_folders`` reads it as one class.
- ``flat``: images directly in the folder; unlabeled, no classes.

Images: ``decode.IMAGE_EXTENSIONS`` (JPEG, PNG, BMP, TIFF, WebP) and DICOM (``.dcm``; needs
pydicom). Files or folders reached through a symlink that leaves the data folder are skipped
and reported (``outside_data_dir``) unless ``read_source(..., follow_outside_links=True)``.

Labels index into ``Source.class_names`` (``CLASSES`` for the three dermoscopy sources).
Problems a user should see (missing images, rejected ids, ...) go to ``Source.problems`` as
``(where, "<category>: detail")`` and end up in the cache's report.csv.
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import os

import re

from melano_tf.data import decode
from melano_tf.data.records import CLASSES, UNLABELED, Record
from melano_tf.errors import UserError

FORMATS = ("isic2017", "isic2019", "isic2020", "ham10000", "isic_cli", "ph2", "class_folders", "flat")
IMAGE_EXTENSIONS = decode.IMAGE_EXTENSIONS + decode.DICOM_EXTENSIONS
ISIC2017_CSV = "ISIC-2017_*_Part3_GroundTruth.csv"
ISIC2019_CSV = "ISIC_2019_Training_GroundTruth*.csv"
ISIC2019_META = "ISIC_2019_Training_Metadata*.csv"
ISIC2019_COLUMNS = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
ISIC2020_CSVS = ("train.csv", "ISIC_2020_Training_GroundTruth*.csv")
PH2_TXT = "PH2_dataset.txt"
PH2_XLSX = "PH2_dataset.xlsx"
PH2_CLINICAL = {"0": "common nevus", "1": "atypical nevus", "2": "melanoma"}
#: Class-folder names and diagnosis abbreviations -> canonical class (compared lower case, with
#: '_' / '-' / repeated spaces as one space).
CLASS_ALIASES = {
    "melanoma": ("melanoma", "melanomas", "mel", "mm", "malignant melanoma", "melanoma malignant",
                 "invasive melanoma", "melanoma in situ"),
    "nevus": ("nevus", "nevi", "naevus", "naevi", "nv", "nev", "common nevus", "atypical nevus",
              "benign nevus", "melanocytic nevus", "melanocytic nevi", "dysplastic nevus",
              "common nevi", "atypical nevi"),
    "seborrheic_keratosis": ("seborrheic keratosis", "seborrhoeic keratosis", "seborrheic keratoses",
                             "sk", "seb keratosis", "bkl", "benign keratosis",
                             "benign keratosis like lesions", "pigmented benign keratosis"),
    "other": ("other", "others", "bcc", "basal cell carcinoma", "ak", "akiec", "actinic keratosis",
              "actinic keratoses", "df", "dermatofibroma", "vasc", "vascular lesion", "vascular lesions",
              "scc", "squamous cell carcinoma", "unk", "unknown"),
}
_ALIAS = {alias: name for name, aliases in CLASS_ALIASES.items() for alias in aliases}
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


def canonical_class(name: str) -> str | None:
    """The canonical class of a folder name or diagnosis abbreviation, None if not in the table."""
    key = re.sub(r"[\s_\-]+", " ", name.strip().lower()).strip()
    return _ALIAS.get(key)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _inside(path: str, base: str) -> bool:
    real = os.path.realpath(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def _walk_images(root: str, problems: list | None = None, base: str | None = None,
                 follow_outside: bool = False) -> list[str]:
    """All image files below root (hidden folders skipped), sorted.

    A file or folder that is a symlink resolving outside ``base`` (default root) is skipped and,
    with ``problems``, reported as ``outside_data_dir``; symlinked folders are not descended
    (except, with follow_outside, those leading outside)."""
    base = os.path.realpath(base or root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_outside):
        keep = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            full = os.path.join(dirpath, d)
            if os.path.islink(full) and not follow_outside and not _inside(full, base):
                if problems is not None:
                    problems.append((full, f"outside_data_dir: symlink to {os.path.realpath(full)} "
                                           "(not followed)"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            if not _is_image(f):
                continue
            full = os.path.join(dirpath, f)
            if not follow_outside and os.path.islink(full) and not _inside(full, base):
                if problems is not None:
                    problems.append((full, f"outside_data_dir: symlink to {os.path.realpath(full)} "
                                           "(not followed)"))
                continue
            found.append(full)
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
    """Files in root (and up to max_depth folders below) whose name matches pattern; a file or
    folder reached through a symlink leaving root is not listed."""
    out = []
    root = os.path.abspath(root)
    base = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = dirpath[len(root):].count(os.sep)
        if depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in filenames if fnmatch.fnmatchcase(f, pattern)
                   and _inside(os.path.join(dirpath, f), base))
    return sorted(out)


def _csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _isic2020_csv(root: str) -> str | None:
    for pattern in ISIC2020_CSVS:
        for path in _find(root, pattern, max_depth=1):
            header = _csv_header(path)
            if "image_name" in header and ("target" in header or "benign_malignant" in header):
                return path
    return None


def _ph2_files(root: str) -> tuple[list[str], list[str]]:
    return _find(root, PH2_TXT, max_depth=1), _find(root, PH2_XLSX, max_depth=1)


def _image_subfolders(data_dir: str) -> list[str]:
    out = []
    for e in sorted(os.listdir(data_dir)):
        sub = os.path.join(data_dir, e)
        if not e.startswith(".") and os.path.isdir(sub) and _inside(sub, os.path.realpath(data_dir)) \
                and _walk_images(sub, base=data_dir):
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
    _check_dir(data_dir)
    if _find(data_dir, ISIC2017_CSV):
        return "isic2017"
    if _find(data_dir, ISIC2019_CSV, max_depth=1):
        return "isic2019"
    if os.path.isfile(os.path.join(data_dir, HAM_CSV)):
        return "ham10000"
    meta = os.path.join(data_dir, ISIC_CLI_CSV)
    if os.path.isfile(meta) and "isic_id" in _csv_header(meta):
        return "isic_cli"
    if _isic2020_csv(data_dir):
        return "isic2020"
    txt, xlsx = _ph2_files(data_dir)
    if txt:
        return "ph2"
    if xlsx:
        raise UserError(f"{xlsx[0]}: PH2 with only the .xlsx table; put PH2_dataset.txt (in the same "
                        "PH2 download) beside it")
    entries = sorted(os.listdir(data_dir))
    if any(_is_image(e) and os.path.isfile(os.path.join(data_dir, e)) for e in entries):
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


def _read_isic2017(root: str, follow: bool = False) -> Source:
    problems: list = []
    images = [p for p in _walk_images(root, problems, follow_outside=follow)
              if not _stem(p).endswith(_NOT_LESION_SUFFIXES)]
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
            records.append(Record(index[image_id], CLASSES.index(name), image_id, image_id, name))
    for stem, path in index.items():
        if stem not in seen:
            problems.append((path, "unlabeled: not in any ground-truth CSV"))
    return Source("isic2017", root, records, CLASSES, problems)


def _read_isic2019(root: str, follow: bool = False) -> Source:
    problems: list = []
    images = [p for p in _walk_images(root, problems, follow_outside=follow)
              if not _stem(p).endswith(_NOT_LESION_SUFFIXES)]
    index = _index_by_stem(images, problems)
    lesions: dict[str, str] = {}
    for meta in _find(root, ISIC2019_META, max_depth=1):
        for _, row in _read_csv(meta, ("image",)):
            if row.get("lesion_id"):
                lesions[row["image"]] = row["lesion_id"]
    records, seen = [], set()
    csvs = _find(root, ISIC2019_CSV, max_depth=1)
    if not csvs:
        raise UserError(f"{root}: no {ISIC2019_CSV.replace('*', '')} (ISIC 2019 ground truth)")
    for csv_path in csvs:
        rows = _read_csv(csv_path, ("image",))
        header = list(rows[0][1]) if rows else []
        columns = [c for c in ISIC2019_COLUMNS if c in header]
        if rows and not columns:
            raise UserError(f"{csv_path}: row 1: none of the diagnosis columns {', '.join(ISIC2019_COLUMNS)}")
        for line, row in rows:
            image_id = row["image"]
            where = _where(csv_path, line, image_id)
            values = {c: _float01(csv_path, line, c, row[c]) for c in columns}
            if not _usable_id(image_id, where, seen, index, problems):
                continue
            hot = [c for c in columns if values[c] >= 0.5]
            if len(hot) != 1:
                problems.append((where, f"unlabeled: {len(hot)} diagnosis columns set, expected one"))
                continue
            name = canonical_class(hot[0]) or "other"
            records.append(Record(index[image_id], CLASSES.index(name), lesions.get(image_id) or image_id,
                                  image_id, hot[0]))
    return Source("isic2019", root, records, CLASSES, problems)


def _diagnosis_class(text: str) -> str:
    """Free-text diagnosis -> canonical class (table first, then melanoma/nevus/SK substrings)."""
    name = canonical_class(text)
    if name:
        return name
    t = text.lower()
    for needle, name in ISIC_CLI_DIAGNOSES:
        if needle in t:
            return name
    return "other"


def _read_isic2020(root: str, follow: bool = False) -> Source:
    problems: list = []
    csv_path = _isic2020_csv(root)
    if csv_path is None:
        raise UserError(f"{root}: no train.csv with image_name and target columns (ISIC 2020)")
    by_stem: dict[str, list[str]] = {}
    for p in _walk_images(root, problems, follow_outside=follow):
        by_stem.setdefault(_stem(p), []).append(p)
    index: dict[str, str] = {}
    for stem, paths in by_stem.items():
        # Kaggle's layout holds each image twice: jpeg/train/X.jpg and train/X.dcm; take the JPEG.
        plain = [p for p in paths if not p.lower().endswith(decode.DICOM_EXTENSIONS)] or paths
        index[stem] = plain[0]
        for p in plain[1:]:
            problems.append((p, f"duplicate_id: same id as {plain[0]}"))
    records, seen = [], set()
    for line, row in _read_csv(csv_path, ("image_name",)):
        image_id = row["image_name"]
        where = _where(csv_path, line, image_id)
        if not _usable_id(image_id, where, seen, index, problems):
            continue
        diagnosis = row.get("diagnosis") or row.get("benign_malignant") or ""
        name = _diagnosis_class(diagnosis) if diagnosis else "other"
        if row.get("target", "").strip() in ("1", "1.0") or row.get("benign_malignant", "").lower() == "malignant":
            name = "melanoma"  # every malignant lesion of ISIC 2020 is a melanoma
        group = row.get("patient_id") or row.get("lesion_id") or image_id
        records.append(Record(index[image_id], CLASSES.index(name), group, image_id, diagnosis))
    return Source("isic2020", root, records, CLASSES, problems)


def _read_ph2(root: str, follow: bool = False) -> Source:
    problems: list = []
    txt = _ph2_files(root)[0]
    if not txt:
        raise UserError(f"{root}: no {PH2_TXT} (PH2)")
    txt = txt[0]
    images = [p for p in _walk_images(root, problems, follow_outside=follow)
              if os.path.basename(os.path.dirname(p)).lower().endswith("_dermoscopic_image")]
    index = _index_by_stem(images, problems)
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
        if not _usable_id(image_id, where, seen, index, problems):
            continue
        diagnosis = PH2_CLINICAL[code]
        records.append(Record(index[image_id], CLASSES.index(_diagnosis_class(diagnosis)), image_id,
                              image_id, diagnosis))
    if not seen:
        raise UserError(f"{txt}: no '|| IMDxxx || ... ||' rows with a clinical diagnosis found")
    return Source("ph2", root, records, CLASSES, problems)


def _read_ham10000(root: str, follow: bool = False) -> Source:
    problems: list = []
    index = _index_by_stem(_walk_images(root, problems, follow_outside=follow), problems)
    csv_path = os.path.join(root, HAM_CSV)
    records, seen = [], set()
    for line, row in _read_csv(csv_path, ("lesion_id", "image_id", "dx")):
        image_id = row["image_id"]
        where = _where(csv_path, line, image_id)
        if not _usable_id(image_id, where, seen, index, problems):
            continue
        name = HAM_DX.get(row["dx"].lower(), "other")
        records.append(Record(index[image_id], CLASSES.index(name), row["lesion_id"] or image_id, image_id,
                              row["dx"]))
    return Source("ham10000", root, records, CLASSES, problems)


def _isic_cli_class(row: dict, columns: list[str]) -> str:
    texts = [row[c].lower() for c in columns if row.get(c)]
    for needle, name in ISIC_CLI_DIAGNOSES:
        if any(needle in t for t in texts):
            return name
    return "other"


def _read_isic_cli(root: str, follow: bool = False) -> Source:
    problems: list = []
    index = _index_by_stem(_walk_images(root, problems, follow_outside=follow), problems)
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
        diagnosis = next((row[c] for c in reversed(columns) if row.get(c)), "")
        records.append(Record(index[image_id], label, row.get("lesion_id") or image_id, image_id, diagnosis))
    return Source("isic_cli", root, records, CLASSES, problems)


def _read_class_folders(root: str, follow: bool = False) -> Source:
    problems: list = []
    base = os.path.realpath(root)
    folders = []  # (folder name, class name, images)
    for e in sorted(os.listdir(root)):
        sub = os.path.join(root, e)
        if e.startswith(".") or not os.path.isdir(sub):
            continue
        if not follow and not _inside(sub, base):
            problems.append((sub, f"outside_data_dir: symlink to {os.path.realpath(sub)} (not followed)"))
            continue
        imgs = _walk_images(sub, problems, base=base if not follow else sub, follow_outside=follow)
        if imgs:
            folders.append((e, canonical_class(e) or e, imgs))
    names = tuple(sorted({name for _, name, _ in folders}))
    records = [Record(p, names.index(name), _stem(p), _stem(p), folder)
               for folder, name, imgs in folders for p in imgs]
    return Source("class_folders", root, records, names, problems)


def _read_flat(root: str, follow: bool = False) -> Source:
    problems: list = []
    base = os.path.realpath(root)
    paths = []
    for e in sorted(os.listdir(root)):
        p = os.path.join(root, e)
        if not _is_image(e) or not os.path.isfile(p):
            continue
        if not follow and not _inside(p, base):
            problems.append((p, f"outside_data_dir: symlink to {os.path.realpath(p)} (not followed)"))
            continue
        paths.append(p)
    return Source("flat", root, [Record(p, UNLABELED, _stem(p), _stem(p)) for p in paths], (), problems)


_READERS = {"isic2017": _read_isic2017, "isic2019": _read_isic2019, "isic2020": _read_isic2020,
            "ham10000": _read_ham10000, "isic_cli": _read_isic_cli, "ph2": _read_ph2,
            "class_folders": _read_class_folders, "flat": _read_flat}


def read_source(data_dir: str, data_format: str = "auto", classes=None,
                follow_outside_links: bool = False) -> Source:
    """Reads data_dir in data_format ("auto" detects it), keeping only ``classes`` when given.

    classes: class names (e.g. ["melanoma"]); labels keep their index into class_names.
    follow_outside_links: also read files reached through symlinks that leave data_dir (by
      default they are skipped and reported as ``outside_data_dir``).
    Raises UserError (one line naming the path) for a missing folder, a malformed CSV, an unknown
    class, a source without any image, or DICOM files without pydicom installed.
    """
    _check_dir(data_dir)
    root = os.path.abspath(data_dir)
    if data_format in (None, "", "auto"):
        data_format = detect_format(root)
    if data_format not in _READERS:
        raise UserError(f"--data_format={data_format}: choose one of auto, {', '.join(FORMATS)}")
    source = _READERS[data_format](root, follow_outside_links)
    if not source.records:
        detail = f" ({len(source.problems)} problems, e.g. {source.problems[0][0]}: " \
                 f"{source.problems[0][1]})" if source.problems else ""
        raise UserError(f"{root}: no images found in {data_format} layout{detail}")
    dicoms = [r.path for r in source.records if r.path.lower().endswith(decode.DICOM_EXTENSIONS)]
    if dicoms and not decode.have_pydicom():
        raise UserError(f"{root}: {len(dicoms)} DICOM images (e.g. {dicoms[0]}) need pydicom: "
                        f"{decode.DICOM_HINT}")
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
