"""What every reader shares: :class:`Source`, class aliases and diagnosis text -> class
(:func:`canonical_class`, :func:`diagnosis_class`), image walking with the data-folder symlink check,
CSV reading and the id checks that turn bad rows into problems."""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import os
import re

from melano_tf.data import decode
from melano_tf.data.records import Record
from melano_tf.errors import UserError

IMAGE_EXTENSIONS = decode.IMAGE_EXTENSIONS + decode.DICOM_EXTENSIONS
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
# isic-cli diagnosis text -> class, first match wins (case-insensitive substring).
ISIC_CLI_DIAGNOSES = (("melanoma", "melanoma"), ("nevus", "nevus"),
                      ("seborrheic keratosis", "seborrheic_keratosis"))


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


def diagnosis_class(text: str) -> str:
    """Free-text diagnosis -> canonical class (table first, then melanoma/nevus/SK substrings)."""
    name = canonical_class(text)
    if name:
        return name
    t = text.lower()
    for needle, name in ISIC_CLI_DIAGNOSES:
        if needle in t:
            return name
    return "other"


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def inside(path: str, base: str) -> bool:
    real = os.path.realpath(path)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def walk_images(root: str, problems: list | None = None, base: str | None = None,
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
            if os.path.islink(full) and not follow_outside and not inside(full, base):
                if problems is not None:
                    problems.append((full, f"outside_data_dir: symlink to {os.path.realpath(full)} "
                                           "(not followed)"))
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            if not is_image(f):
                continue
            full = os.path.join(dirpath, f)
            if not follow_outside and os.path.islink(full) and not inside(full, base):
                if problems is not None:
                    problems.append((full, f"outside_data_dir: symlink to {os.path.realpath(full)} "
                                           "(not followed)"))
                continue
            found.append(full)
    return sorted(found)


def file_stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def index_by_stem(paths: list[str], problems: list) -> dict[str, str]:
    index: dict[str, str] = {}
    for p in paths:
        s = file_stem(p)
        if s in index:
            problems.append((p, f"duplicate_id: same id as {index[s]}"))
        else:
            index[s] = p
    return index


def bad_id(image_id: str) -> str | None:
    if not image_id:
        return "empty id"
    if "/" in image_id or "\\" in image_id or ".." in image_id or "\x00" in image_id:
        return "id contains a path separator or '..'"
    if os.path.isabs(image_id) or (len(image_id) > 1 and image_id[1] == ":"):
        return "absolute path as id"
    return None


def usable_id(image_id: str, where: str, seen: set, index: dict, problems: list) -> bool:
    """False (and a reported problem) for a rejected, repeated or missing CSV id; marks it seen."""
    bad = bad_id(image_id)
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


def check_dir(data_dir: str) -> None:
    if not data_dir or not os.path.isdir(data_dir):
        raise UserError(f"{data_dir}: no such directory")


def one_line(text: str) -> str:
    """CSV text for a one-line message (a quoted field may hold line breaks)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def read_csv(path: str, required: tuple[str, ...] = (), any_prefix: str | None = None):
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
                                f"(header: {one_line(','.join(header))})")
            if any_prefix and not any(h.startswith(any_prefix) for h in header):
                raise UserError(f"{path}: row 1: no {any_prefix}* column (header: {one_line(','.join(header))})")
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


def csv_where(csv_path: str, line: int, image_id: str) -> str:
    return f"{csv_path}:row {line} ({one_line(image_id)})"


def float01(csv_path: str, line: int, column: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise UserError(f"{csv_path}: row {line}: {column}={value!r} is not a number") from None
    if v != v:  # NaN
        raise UserError(f"{csv_path}: row {line}: {column}={value!r} is not a number")
    return v


def find_files(root: str, pattern: str, max_depth: int = 0) -> list[str]:
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
                   and inside(os.path.join(dirpath, f), base))
    return sorted(out)


def csv_header(path: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
