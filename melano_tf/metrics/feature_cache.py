"""On-disk cache of the real set's feature activations (I/O, not a metric).

Used by ``bin/evaluate`` (:mod:`melano_tf.evaluation.evaluate`) so that FID, KID, precision/recall and
feature-space memorization reuse the real set's activations across evaluations: an ``.npz`` per key
under ``--stats_dir`` (default ``$XDG_CACHE_HOME/melano_tf/stats``, else ``~/.cache/melano_tf/stats``).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np


def default_stats_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "melano_tf", "stats")


def cached_activations(key_parts: dict, compute, stats_dir: str | None = None) -> tuple[np.ndarray, bool]:
    """Activations stored as ``<stats_dir>/<sha256(key_parts)[:16]>.npz``; computed on a miss.

    key_parts: e.g. ``{"content_hash": ..., "extractor": ex.key, "split": ..., "count": ...}``.
    Returns ``(activations, hit)``. Written atomically with the key beside it (``.json``).
    """
    import hashlib
    stats_dir = stats_dir or default_stats_dir()
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(stats_dir, f"{key}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path) as z:
                return z["activations"].astype(np.float64), True
        except (OSError, ValueError, KeyError):
            pass  # unreadable: recompute and overwrite
    act = np.asarray(compute(), np.float32)  # stored as float32: a hit returns the same numbers
    from melano_tf import fileio
    with fileio.writing(stats_dir, "the cached real-image statistics (--stats_dir)"):
        os.makedirs(stats_dir, exist_ok=True)
        with fileio.atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, activations=act)
        fileio.write_json_atomic(os.path.join(stats_dir, f"{key}.json"),
                                 {**key_parts, "shape": list(act.shape), "written": time.time()}, indent=1)
    return act.astype(np.float64), False
