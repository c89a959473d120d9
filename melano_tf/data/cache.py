"""Preprocessing cache: a Source -> square, resized images in sharded TFRecords plus a manifest.

Layout of ``cache_dir``::

    manifest.json                      parameters, counts, content hash, shard list
    report.csv                         path,reason for every skipped file or source problem
    train-00000-of-00007.tfrecord ...  tf.train.Example: image (PNG bytes), label (int64),
    validation-...  test-...           group (bytes), image_id (bytes), diagnosis (bytes: the
                                       source's own diagnosis or folder name, may be empty)

The content hash covers every input (relative path, size, mtime_ns, label, group, id), the
source's problems and all parameters: the same inputs and parameters reuse the cache, anything
else rebuilds it. A build is written into a temporary sibling folder and renamed into place
when complete, so an interrupted prepare never leaves a cache that looks valid.

Images are stored PNG-encoded (compress_level=1): lossless; measured on 256 px phantoms 108 KiB
against 192 KiB raw, 6 ms to encode (level 6: 93 KiB but 21 ms). Decoding them in tf.data is far
cheaper than a train step (bench/input_pipeline.py).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

from PIL import Image

from melano_tf import fileio
from melano_tf.data import decode, examples
from melano_tf.data import workers as workers_mod
from melano_tf.data.records import UNLABELED
from melano_tf.data.splits import SPLITS, check_fractions, split_records
from melano_tf.errors import UserError

VERSION = 1
MANIFEST = "manifest.json"
REPORT = "report.csv"
#: Examples per shard when num_shards is not given.
SHARD_SIZE = 256


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The content of manifest.json, plus where it lives."""

    cache_dir: str
    version: int
    format: str
    source_root: str
    class_names: tuple[str, ...]
    resolution: int
    crop: str
    seed: int
    fractions: tuple[float, float, float]
    num_shards: int | None
    counts: dict            # split -> examples
    class_counts: dict      # split -> {class name: examples}
    shards: dict            # split -> [{"file", "count", "bytes"}]
    skipped: dict           # category -> count
    content_hash: str
    image_encoding: str = "png"
    diagnosis_counts: dict = dataclasses.field(default_factory=dict)  # split -> {source diagnosis: n}

    def files(self, split: str) -> list[str]:
        """Absolute paths of the split's shard files (empty shards included)."""
        return [os.path.join(self.cache_dir, s["file"]) for s in self.shards[split]]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        del d["cache_dir"]
        return {
            "version": d.pop("version"), "format": d.pop("format"),
            "source_root": d.pop("source_root"), "class_names": list(self.class_names),
            "parameters": {"resolution": d.pop("resolution"), "crop": d.pop("crop"),
                           "seed": d.pop("seed"), "fractions": list(self.fractions),
                           "num_shards": d.pop("num_shards")},
            **{k: v for k, v in d.items() if k not in ("class_names", "fractions")},
        }

    @classmethod
    def from_dict(cls, cache_dir: str, d: dict) -> "Manifest":
        p = d["parameters"]
        return cls(cache_dir=cache_dir, version=d["version"], format=d["format"],
                   source_root=d["source_root"], class_names=tuple(d["class_names"]),
                   resolution=int(p["resolution"]), crop=p["crop"], seed=int(p["seed"]),
                   fractions=tuple(p["fractions"]), num_shards=p["num_shards"],
                   counts=d["counts"], class_counts=d["class_counts"], shards=d["shards"],
                   skipped=d["skipped"], content_hash=d["content_hash"],
                   image_encoding=d.get("image_encoding", "png"),
                   diagnosis_counts=d.get("diagnosis_counts", {}))


def load_manifest(cache_dir: str) -> Manifest:
    """Reads cache_dir/manifest.json. UserError when there is none or it is unreadable."""
    path = os.path.join(cache_dir, MANIFEST)
    if not os.path.isfile(path):
        raise UserError(f"{cache_dir}: no {MANIFEST}, not a prepared cache (run bin/prepare_data)")
    try:
        with open(path, encoding="utf-8") as f:
            m = Manifest.from_dict(os.path.abspath(cache_dir), json.load(f))
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: unreadable manifest ({type(e).__name__}: {e}); prepare again") from None
    if m.version != VERSION:
        raise UserError(f"{path}: cache version {m.version}, this melano_tf writes {VERSION}; prepare again")
    return m


def _content_hash(source, params: dict) -> str:
    h = hashlib.sha256()
    head = {"version": VERSION, "format": source.format, "class_names": list(source.class_names),
            "params": params}
    h.update(json.dumps(head, sort_keys=True).encode())
    for r in sorted(source.records, key=lambda r: r.path):
        try:
            st = os.stat(r.path)
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = None
        rel = os.path.relpath(r.path, source.root)
        item = [rel, stat, r.label, r.group, r.image_id] + ([r.diagnosis] if r.diagnosis else [])
        h.update(json.dumps(item).encode())
    for where, reason in sorted(source.problems):
        h.update(json.dumps([os.path.relpath(where, source.root) if os.path.isabs(where) else where,
                             reason]).encode())
    return h.hexdigest()


def _valid_cache(cache_dir: str, content_hash: str) -> Manifest | None:
    try:
        m = load_manifest(cache_dir)
    except UserError:
        return None
    if m.content_hash != content_hash:
        return None
    for split in SPLITS:
        for s in m.shards.get(split, []):
            p = os.path.join(cache_dir, s["file"])
            if not os.path.isfile(p) or os.path.getsize(p) != s["bytes"]:
                return None
    return m


def _work(job):
    """Worker: (path, resolution, crop) -> (sha256 of file bytes, PNG bytes, reason)."""
    path, resolution, crop = job
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None, None, "missing: file disappeared"
    except OSError as e:
        return None, None, f"unreadable: {e.strerror or e}"
    sha = hashlib.sha256(data).hexdigest()
    try:
        img = decode.preprocess(data, resolution, crop)
    except decode.BadImage as e:
        return sha, None, str(e)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return sha, buf.getvalue(), None


class _Progress:
    """One self-overwriting progress line on stderr (a new line every 10 s when not a tty)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.start = self.last = time.monotonic()
        self.tty = enabled and sys.stderr.isatty()

    def line(self, done: int) -> str:
        dt = max(time.monotonic() - self.start, 1e-9)
        rate = done / dt
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        eta_s = f"{eta:.0f}s" if math.isfinite(eta) else "?"
        return f"prepare: {done}/{self.total} images, {rate:.1f} img/s, ETA {eta_s}"

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last >= (0.5 if self.tty else 10.0):
            self.last = now
            sys.stderr.write(("\r" + self.line(done)) if self.tty else self.line(done) + "\n")
            sys.stderr.flush()

    def finish(self, done: int) -> None:
        if self.enabled:
            sys.stderr.write(("\r" if self.tty else "") + self.line(done) + "\n")
            sys.stderr.flush()


def _ordered(records, seed: int, root: str):
    """Record order inside a split: a seeded hash order, so shards mix classes and folders.

    Paths enter relative to the source root, so the order (and which of two identical files is
    kept) does not depend on where the data set lies."""
    key = lambda r: hashlib.sha256(f"{seed}:order:{r.image_id}:{os.path.relpath(r.path, root)}".encode()).digest()
    return sorted(records, key=key)


def _check_replaceable(cache_dir: str) -> None:
    if os.path.lexists(cache_dir) and not os.path.isdir(cache_dir):
        raise UserError(f"{cache_dir}: exists and is not a folder; give a folder for the cache")
    if os.path.isdir(cache_dir) and os.listdir(cache_dir) and \
            not os.path.isfile(os.path.join(cache_dir, MANIFEST)):
        raise UserError(f"{cache_dir}: holds other files and no {MANIFEST}; give a new or empty "
                        "folder for the cache")


def _summary(counts: dict, skipped: collections.Counter, report: str) -> str:
    total = sum(counts.values())
    parts = " / ".join(f"{s} {counts[s]}" for s in SPLITS)
    line = f"prepared {total} images ({parts}); skipped {sum(skipped.values())}"
    if skipped:
        detail = ", ".join(f"{n} {cat}" for cat, n in skipped.most_common())
        line += f": {detail} -> {report}"
    return line


def prepare(source, cache_dir: str, resolution: int, crop: str = "center", seed: int = 0,
            fractions=(0.8, 0.1, 0.1), num_shards: int | None = None, workers: int | None = None,
            progress: bool = True) -> Manifest:
    """Builds (or reuses) the TFRecord cache of ``source`` in ``cache_dir``; returns its manifest.

    num_shards: shards per split (capped by the split's size); None: one per SHARD_SIZE images.
    workers: processes decoding in parallel; None: every core.
    Prints one line on stdout ("cache hit: ..." or the summary); progress goes to stderr.
    Raises UserError when no image is usable, or cache_dir holds something else.
    """
    if not (isinstance(resolution, int) and 8 <= resolution <= 4096
            and resolution & (resolution - 1) == 0):
        raise UserError(f"resolution={resolution}: must be a power of two from 8 to 4096")
    if crop not in decode.CROPS:
        raise UserError(f"crop={crop}: choose one of {', '.join(decode.CROPS)}")
    fractions = check_fractions(fractions)
    if num_shards is not None and num_shards < 1:
        raise UserError(f"num_shards={num_shards}: must be >= 1")
    cache_dir = os.path.abspath(cache_dir)
    params = {"resolution": resolution, "crop": crop, "seed": seed, "fractions": list(fractions),
              "num_shards": num_shards}
    content_hash = _content_hash(source, params)
    hit = _valid_cache(cache_dir, content_hash)
    if hit is not None:
        print(f"cache hit: {cache_dir} ({hit.total} images at {resolution} px, "
              f"hash {content_hash[:12]})")
        return hit
    _check_replaceable(cache_dir)
    fileio.check_output_dir(cache_dir, "cache folder")

    splits = {s: _ordered(rs, seed, source.root) for s, rs in split_records(source.records, seed, fractions).items()}
    jobs, plan = [], []  # plan[i] = (split, shard index, record)
    shard_counts = {}
    for s in SPLITS:
        n = len(splits[s])
        k = max(1, min(num_shards or math.ceil(n / SHARD_SIZE), n))
        shard_counts[s] = k
        for j, r in enumerate(splits[s]):
            plan.append((s, j * k // max(n, 1), r))
            jobs.append((r.path, resolution, crop))
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, min(int(workers), len(jobs)))

    parent = os.path.dirname(cache_dir)
    # A full disk: one line naming the folder; the half-built cache is removed, an earlier one kept.
    with fileio.writing(cache_dir, "the cache"):
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(cache_dir)}.tmp-", dir=parent)
        try:
            manifest, summary = _build(source, tmp, cache_dir, plan, jobs, shard_counts, workers,
                                       progress, params, content_hash)
            if os.path.lexists(cache_dir):
                old = tmp + ".old"
                os.rename(cache_dir, old)
                os.rename(tmp, cache_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, cache_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    print(summary)
    return manifest


def _results(jobs, workers: int):
    if workers == 1:
        yield from map(_work, jobs)
        return
    chunk = max(1, min(16, len(jobs) // (workers * 8)))
    # spawn: the parent may hold TensorFlow's threads, which fork does not survive safely.
    with workers_mod.pool(multiprocessing.get_context("spawn"), workers) as pool:
        yield from pool.imap(_work, jobs, chunksize=chunk)


def _build(source, tmp, cache_dir, plan, jobs, shard_counts, workers, progress, params, content_hash):
    import tensorflow as tf

    names = source.class_names
    label_name = lambda label: "unlabeled" if label == UNLABELED else names[label]
    report_rows = [(where, reason) for where, reason in source.problems]
    skipped = collections.Counter(reason.split(":", 1)[0] for _, reason in report_rows)
    counts = {s: 0 for s in SPLITS}
    class_counts = {s: collections.Counter() for s in SPLITS}
    diagnosis_counts = {s: collections.Counter() for s in SPLITS}
    shard_files = {s: [] for s in SPLITS}
    shard_n = {s: [0] * shard_counts[s] for s in SPLITS}
    for s in SPLITS:
        k = shard_counts[s]
        shard_files[s] = [f"{s}-{i:05d}-of-{k:05d}.tfrecord" for i in range(k)]
    seen: dict[str, str] = {}
    current = (None, None, None)  # (split, shard, writer)
    bar = _Progress(len(jobs), progress)

    def open_shard(split, shard):
        nonlocal current
        if current[2] is not None:
            current[2].close()
        current = (split, shard, tf.io.TFRecordWriter(os.path.join(tmp, shard_files[split][shard])))

    try:
        for i, (sha, png, reason) in enumerate(_results(jobs, workers)):
            split, shard, rec = plan[i]
            if reason is None and sha in seen:
                reason = f"duplicate: same bytes as {seen[sha]}"
            if sha is not None and sha not in seen:
                seen[sha] = rec.path
            if reason is not None:
                report_rows.append((rec.path, reason))
                skipped[reason.split(":", 1)[0]] += 1
            else:
                if current[:2] != (split, shard):
                    open_shard(split, shard)
                current[2].write(examples.encode(png, rec.label, rec.group, rec.image_id, rec.diagnosis))
                if rec.diagnosis:
                    diagnosis_counts[split][rec.diagnosis] += 1
                counts[split] += 1
                shard_n[split][shard] += 1
                class_counts[split][label_name(rec.label)] += 1
            bar.update(i + 1)
    finally:
        if current[2] is not None:
            current[2].close()
    bar.finish(len(jobs))

    report = os.path.join(cache_dir, REPORT)
    if sum(counts.values()) == 0:
        detail = ", ".join(f"{n} {c}" for c, n in skipped.most_common())
        raise UserError(f"{source.root}: no usable image ({detail})")
    for s in SPLITS:  # empty shards still exist, so the manifest's file list is complete
        for f in shard_files[s]:
            p = os.path.join(tmp, f)
            if not os.path.exists(p):
                tf.io.TFRecordWriter(p).close()
    with open(os.path.join(tmp, REPORT), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "reason"])
        w.writerows(report_rows)
    manifest = Manifest(
        cache_dir=cache_dir, version=VERSION, format=source.format, source_root=source.root,
        class_names=tuple(names), resolution=params["resolution"], crop=params["crop"],
        seed=params["seed"], fractions=tuple(params["fractions"]), num_shards=params["num_shards"],
        counts=counts,
        class_counts={s: dict(sorted(class_counts[s].items())) for s in SPLITS},
        shards={s: [{"file": f, "count": shard_n[s][i],
                     "bytes": os.path.getsize(os.path.join(tmp, f))}
                    for i, f in enumerate(shard_files[s])] for s in SPLITS},
        skipped=dict(sorted(skipped.items())), content_hash=content_hash,
        diagnosis_counts={s: dict(sorted(diagnosis_counts[s].items())) for s in SPLITS
                          if diagnosis_counts[s]})
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest.to_dict(), f, indent=2)
        f.write("\n")
    return manifest, _summary(counts, skipped, report)
