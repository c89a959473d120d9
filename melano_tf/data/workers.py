"""Helper processes for data preparation, started without TensorFlow's oneDNN start-up line."""

from __future__ import annotations

import os


def pool(ctx, workers: int):
    """``ctx.Pool(workers)`` whose processes start with ``TF_ENABLE_ONEDNN_OPTS=0`` (unless the
    user set it): they decode, draw and resize images, they do not train, and on Intel CPUs with
    AVX-512 each one's TensorFlow import would otherwise print "oneDNN custom operations are on"
    to stderr, a line no TF_CPP_MIN_LOG_LEVEL silences. Only the children's start-up sees the
    setting (a pool starts its processes in its constructor); this process keeps oneDNN."""
    unset = "TF_ENABLE_ONEDNN_OPTS" not in os.environ
    if unset:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    try:
        return ctx.Pool(workers)
    finally:
        if unset:
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
