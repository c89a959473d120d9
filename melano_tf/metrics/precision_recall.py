"""Improved precision and recall: k-NN manifolds of real and synthetic sets in feature space.

Kynkaanniemi, Karras, Laine, Lehtinen & Aila (2019), "Improved Precision and Recall Metric for
Assessing Generative Models" (NeurIPS). For a set of feature vectors ``Phi`` let
``NN_k(phi', Phi)`` be the distance from ``phi'`` to its k-th nearest neighbour in ``Phi`` (itself
excluded). ``phi`` lies on the manifold of ``Phi`` when it falls inside at least one hypersphere:

    f(phi, Phi) = 1  if  exists phi' in Phi with |phi - phi'|_2 <= NN_k(phi', Phi),  else 0

    precision = 1/|Phi_g| sum_{phi_g in Phi_g} f(phi_g, Phi_r)   (realism: samples on the real manifold)
    recall    = 1/|Phi_r| sum_{phi_r in Phi_r} f(phi_r, Phi_g)   (coverage: real data on the sample manifold)

with ``Phi_r`` the real and ``Phi_g`` the generated features; both lie in [0, 1], higher is better.
``k = 3`` as in the paper (which uses VGG-16 fc2 features of 50k images). Values depend on k, the set
sizes and the extractor: compare only numbers measured with the same three.

Distances are exact squared Euclidean distances computed blockwise by matrix products
(``|a|^2 + |b|^2 - 2 a.b`` in float64 on features centred on the real mean), at most
:data:`BLOCK_ELEMENTS` distances in memory at a time (2000 x 2000 x 2048 needs ~32 MB per block).
"""

from __future__ import annotations

import numpy as np

K = 3
#: Distances held in memory per block (float64): 2^22 x 8 bytes = 32 MB.
BLOCK_ELEMENTS = 1 << 22


def _as_features(x, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"precision/recall: {what} must be non-empty (N, d) features, got {x.shape}")
    return x


def _rows_per_block(n_cols: int, batch_size: int | None) -> int:
    return int(batch_size) if batch_size else max(1, BLOCK_ELEMENTS // max(n_cols, 1))


def _sq_distances(a: np.ndarray, a_sq: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
    d = a @ b.T
    d *= -2.0
    d += a_sq[:, None]
    d += b_sq[None, :]
    return np.maximum(d, 0.0, out=d)


def knn_radii(x, k: int = K, batch_size: int | None = None) -> np.ndarray:
    """``NN_k(x_i, x)``: distance from each row of ``x`` (N, d) to its k-th nearest other row -> (N,)."""
    x = _as_features(x, "features")
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"precision/recall: k={k} needs 1 <= k < number of vectors ({n})")
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(n)
    step = _rows_per_block(n, batch_size)
    for s in range(0, n, step):
        d = _sq_distances(x[s:s + step], sq[s:s + step], x, sq)
        rows = np.arange(len(d))
        d[rows, s + rows] = np.inf  # exclude the point itself
        out[s:s + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return np.sqrt(out)


def manifold_membership(points, radii, queries, batch_size: int | None = None) -> np.ndarray:
    """``f(q, points)`` per query: True where ``|q - p_i| <= radii_i`` for some i -> bool (M,)."""
    points, queries = _as_features(points, "points"), _as_features(queries, "queries")
    r2 = np.square(np.asarray(radii, np.float64))
    p_sq, q_sq = np.einsum("ij,ij->i", points, points), np.einsum("ij,ij->i", queries, queries)
    out = np.empty(len(queries), bool)
    step = _rows_per_block(len(points), batch_size)
    for s in range(0, len(queries), step):
        d = _sq_distances(queries[s:s + step], q_sq[s:s + step], points, p_sq)
        out[s:s + len(d)] = (d <= r2[None, :]).any(axis=1)
    return out


def precision_recall_from_activations(real_act, fake_act, k: int = K,
                                      batch_size: int | None = None) -> dict:
    """``{"precision": ..., "recall": ...}`` of features (N_r, d) and (N_g, d); see module doc.

    batch_size: rows per distance block (None: as many as :data:`BLOCK_ELEMENTS` allows).
    """
    real, fake = _as_features(real_act, "real features"), _as_features(fake_act, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision/recall: feature sizes differ ({real.shape[1]} vs {fake.shape[1]})")
    centre = real.mean(axis=0)  # translation-invariant; smaller norms -> less cancellation
    real, fake = real - centre, fake - centre
    precision = manifold_membership(real, knn_radii(real, k, batch_size), fake, batch_size).mean()
    recall = manifold_membership(fake, knn_radii(fake, k, batch_size), real, batch_size).mean()
    return {"precision": float(precision), "recall": float(recall)}


def precision_recall(real, fake, extractor=None, k: int = K, act_real=None, **_) -> dict:
    """Registry entry: ``{"precision", "recall"}`` of uint8 (N, H, W, 3) images over ``extractor``.

    extractor: a :class:`melano_tf.metrics.features.Extractor` or a spec (default random_conv), as
    for ``fid``/``kid``; ``act_real``: the real set's activations when already computed.
    """
    from melano_tf.metrics import features
    ex = features.resolve_extractor(extractor)
    act_real = ex(real) if act_real is None else act_real
    return precision_recall_from_activations(act_real, ex(fake), k)


# ----------------------------------------------------------------------------------------------
# evaluation hooks (melano_tf.metrics registry; real, fake: melano_tf.evaluation.context.ImageSet)

ONLINE_KEYS = ("eval/precision", "eval/recall")


def evaluate(real, fake, settings) -> dict:
    return precision_recall_from_activations(real.features(), fake.features(), settings.k)


def reference(real, settings) -> dict:
    """``precision_real``, ``recall_real``: of two halves of the real set (those of ``fid_floor``)."""
    halves = real.feature_halves(settings.seed)
    if halves is None:
        return {}
    out = precision_recall_from_activations(*halves, settings.k)
    return {"precision_real": out["precision"], "recall_real": out["recall"]}


def online(real, fake, settings) -> dict:
    return {f"eval/{k}": v for k, v in evaluate(real, fake, settings).items()}
