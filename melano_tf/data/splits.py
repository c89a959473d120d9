"""Deterministic train/validation/test splits by group (lesion or patient), never by image.

Each group goes to the split where ``u`` (first 8 bytes of ``sha256(f"{seed}:{group}")`` / 2**64)
falls in the cumulative fractions. This is independent of record order and of the other groups, so adding
images later never moves an existing group to another split.
"""

from __future__ import annotations

import hashlib

from melano_tf.data.records import Record
from melano_tf.errors import UserError

SPLITS = ("train", "validation", "test")


def group_fraction(group: str, seed: int = 0) -> float:
    """The group's position in [0, 1), a pure function of (seed, group)."""
    digest = hashlib.sha256(f"{seed}:{group}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def check_fractions(fractions) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UserError(f"split fractions {fractions}: need three non-negative numbers summing to 1")
    return fr


def split_of(group: str, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> str:
    u = group_fraction(group, seed)
    train, val, _ = check_fractions(fractions)
    if u < train:
        return "train"
    if u < train + val:
        return "validation"
    return "test"


def split_records(records, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[Record]]:
    """{"train", "validation", "test"} -> records (input order kept); a group is on one side only."""
    check_fractions(fractions)
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    memo: dict[str, str] = {}
    for r in records:
        if r.group not in memo:
            memo[r.group] = split_of(r.group, seed, fractions)
        out[memo[r.group]].append(r)
    return out
