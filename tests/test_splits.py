"""Splits: deterministic by seed, by group, stable when records are added."""

import random

import pytest

from melano_tf.data.records import Record
from melano_tf.data.splits import SPLITS, split_records
from melano_tf.errors import UserError


def _records(n_groups, per_group=3, prefix="L"):
    return [Record(f"/d/{prefix}{g}_{i}.jpg", g % 3, f"{prefix}{g}", f"{prefix}{g}_{i}")
            for g in range(n_groups) for i in range(per_group)]


def _ids(split):
    return {s: [r.image_id for r in rs] for s, rs in split.items()}


def test_deterministic_and_order_independent():
    recs = _records(300)
    a, b = split_records(recs, seed=1), split_records(recs, seed=1)
    assert _ids(a) == _ids(b)
    shuffled = recs[:]
    random.Random(0).shuffle(shuffled)
    c = split_records(shuffled, seed=1)
    assert {s: set(v) for s, v in _ids(a).items()} == {s: set(v) for s, v in _ids(c).items()}
    assert _ids(split_records(recs, seed=2)) != _ids(a)


def test_groups_never_on_two_sides():
    split = split_records(_records(500, per_group=4), seed=3)
    groups = {s: {r.group for r in split[s]} for s in SPLITS}
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    assert sum(len(v) for v in split.values()) == 2000


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1.0, 0.0, 0.0)])
def test_fractions_roughly_right(fractions):
    split = split_records(_records(3000, per_group=1), seed=0, fractions=fractions)
    for s, f in zip(SPLITS, fractions):
        assert abs(len(split[s]) / 3000 - f) < 0.03, (s, len(split[s]))


def test_stable_when_records_are_added():
    old = _records(200)
    new = old + _records(100, prefix="N")
    a, b = split_records(old, seed=5), split_records(new, seed=5)
    where = {r.image_id: s for s, rs in b.items() for r in rs}
    assert all(where[r.image_id] == s for s, rs in a.items() for r in rs)


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.9, 0.2, 0.1), (1.2, -0.1, -0.1)])
def test_bad_fractions(bad):
    with pytest.raises(UserError, match="fractions"):
        split_records(_records(3), fractions=bad)
