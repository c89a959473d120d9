"""Feature extractors for FID, KID and feature-space memorization, behind a small registry.

Specs (``--features``, a comma-separated list tried in order; the first available one is used):

* ``inception`` -- ``keras.applications.InceptionV3(include_top=False, pooling="avg")`` with ImageNet
  weights, 2048-d. Only when the weights file is on disk: an explicit path, or Keras' cache
  ``$KERAS_HOME/models/`` (default ``~/.keras/models/``) ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``.
  Never downloaded: without the file one line says so and the next spec is tried. Images are resized
  to 299 px (bilinear) and scaled to [-1, 1] (Keras' ``preprocess_input`` for InceptionV3). This is
  the Keras port, not the TF-slim graph of the original FID code (Heusel et al. 2017), so values
  track but do not equal published FIDs.
* ``classifier:PATH`` -- the penultimate layer of a lesion classifier. PATH is a ``.keras`` / ``.h5``
  Keras model (output of ``model.layers[-2]``), or a SavedModel folder (or a run folder holding
  ``saved_model/``) with a ``features`` signature
  (or a ``serving_default`` output named ``features``, ``embedding`` or ``penultimate``). Input:
  resized to the model's input size, uint8 if the signature takes uint8, else float32 in [-1, 1]
  (the project's image convention).
* ``random_conv`` -- a fixed-seed random convolutional network (4 stride-2 3x3 convs with ReLU,
  32/64/128/256 channels, He-normal weights from ``numpy.random.RandomState(20180404)``, input
  resized to 128 px), features = the spatial means of all four layers (480-d). Needs nothing, runs
  offline, is deterministic; its distances are meaningful ONLY for relative comparisons made with
  the same extractor (schemes against each other, a run over time), never against published numbers.

Every extractor has a ``key`` naming it and the identity of its weights (file size and mtime), used
to key cached real-set activations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from typing import Callable

import numpy as np
import tensorflow as tf

from melano_tf.errors import UserError

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
RANDOM_CONV_SEED = 20180404
RANDOM_CONV_SIZE = 128
RANDOM_CONV_CHANNELS = (32, 64, 128, 256)
DEFAULT_SPECS = ("inception", "random_conv")


@dataclasses.dataclass
class Extractor:
    """``extractor(images uint8 (N, H, W, 3)) -> float64 (N, dim)`` in batches."""

    name: str
    key: str
    fn: Callable  # uint8 tf batch -> float32 (B, dim)
    batch_size: int = 64
    note: str = ""

    def __call__(self, images, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"features: expected (N, H, W, 3) images, got {images.shape}")
        out = []
        for start in range(0, len(images), self.batch_size):
            out.append(np.asarray(self.fn(tf.constant(images[start:start + self.batch_size]))))
            if progress is not None:
                progress(min(start + self.batch_size, len(images)), len(images))
        return np.concatenate(out, axis=0).astype(np.float64)


def _file_id(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def _tree_id(path: str) -> str:
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for f in sorted(files):
            p = os.path.join(root, f)
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _to_float(images: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 -> float32 in [-1, 1] at ``size`` px (bilinear, antialiased when shrinking)."""
    x = tf.cast(images, tf.float32) / 127.5 - 1.0
    if x.shape[1] != size or x.shape[2] != size:
        x = tf.image.resize(x, [size, size], method="bilinear", antialias=True)
    return x


# ----------------------------------------------------------------------------------------------
# random_conv


def random_conv_weights(seed: int = RANDOM_CONV_SEED) -> list[np.ndarray]:
    """He-normal 3x3 kernels ``N(0, 2 / (9 C_in))`` from ``RandomState(seed)`` (float32 HWIO)."""
    rs = np.random.RandomState(seed)
    weights, c_in = [], 3
    for c_out in RANDOM_CONV_CHANNELS:
        w = rs.standard_normal((3, 3, c_in, c_out)) * np.sqrt(2.0 / (9 * c_in))
        weights.append(w.astype(np.float32))
        c_in = c_out
    return weights


def random_conv() -> Extractor:
    kernels = [tf.constant(w) for w in random_conv_weights()]

    @tf.function(reduce_retracing=True)
    def fn(images):
        x = _to_float(images, RANDOM_CONV_SIZE)
        feats = []
        for k in kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, k, strides=2, padding="SAME"))
            feats.append(tf.reduce_mean(x, axis=[1, 2]))
        return tf.concat(feats, axis=-1)

    return Extractor("random_conv", f"random_conv-{RANDOM_CONV_SEED}", fn, batch_size=128,
                     note="random_conv: fixed random features, for relative comparisons only")


# ----------------------------------------------------------------------------------------------
# inception


def find_inception_weights(path: str | None = None) -> str | None:
    """The InceptionV3 no-top weights file: ``path`` if given (UserError if missing), else Keras' cache."""
    if path:
        if not os.path.isfile(path):
            raise UserError(f"--inception_weights={path}: no such file")
        return path
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    cached = os.path.join(home, "models", INCEPTION_FILE)
    return cached if os.path.isfile(cached) else None


def inception(weights: str | None) -> Extractor:
    """InceptionV3 pool features from ``weights`` (a path; None builds random weights, for benchmarks)."""
    import keras
    model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=weights,
                                           input_shape=(299, 299, 3))

    @tf.function(reduce_retracing=True)
    def fn(images):
        return model(_to_float(images, 299), training=False)

    key = f"inception-{_file_id(weights)}" if weights else "inception-random"
    return Extractor("inception", key, fn, batch_size=32)


# ----------------------------------------------------------------------------------------------
# classifier:PATH


def classifier(path: str) -> Extractor:
    """Penultimate-layer features of a lesion classifier (see module doc for what PATH may be)."""
    import keras
    if os.path.isfile(path) and path.endswith((".keras", ".h5")):
        model = keras.models.load_model(path, compile=False)
        if len(model.layers) < 2:
            raise UserError(f"--features=classifier:{path}: the model has no penultimate layer")
        feat = keras.Model(model.inputs, model.layers[-2].output)
        size = model.input_shape[1]

        @tf.function(reduce_retracing=True)
        def fn(images):
            y = feat(_to_float(images, size), training=False)
            return tf.reshape(y, [tf.shape(y)[0], -1])

        return Extractor(f"classifier:{path}", f"classifier-{_file_id(path)}", fn)
    if os.path.isfile(os.path.join(path, "saved_model", "saved_model.pb")):
        path = os.path.join(path, "saved_model")  # a classifier run folder
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise UserError(f"--features=classifier:{path}: not a .keras/.h5 file, a SavedModel folder nor a "
                        "run folder holding saved_model/")
    obj = tf.saved_model.load(path)
    sig, out_key = obj.signatures.get("features"), None
    if sig is None:
        sig = obj.signatures.get("serving_default")
        outs = set(sig.structured_outputs) if sig is not None else set()
        out_key = next((k for k in ("features", "embedding", "penultimate") if k in outs), None)
        if out_key is None:
            raise UserError(f"--features=classifier:{path}: the SavedModel has no 'features' signature "
                            "and no 'features'/'embedding'/'penultimate' output (has signatures: "
                            f"{', '.join(obj.signatures) or 'none'}); export the classifier with a "
                            "'features' endpoint")
    (arg, spec), = sig.structured_input_signature[1].items()
    size = spec.shape[1] or 224

    def fn(images):
        x = tf.image.resize(images, [size, size], antialias=True)
        x = tf.cast(tf.round(tf.clip_by_value(x, 0, 255)), tf.uint8) if spec.dtype == tf.uint8 \
            else tf.cast(x / 127.5 - 1.0, spec.dtype)
        out = sig(**{arg: x})
        y = out[out_key] if out_key else next(iter(out.values()))
        return tf.reshape(tf.cast(y, tf.float32), [tf.shape(y)[0], -1])

    return Extractor(f"classifier:{path}", f"classifier-{_tree_id(path)}", fn)


# ----------------------------------------------------------------------------------------------


def get_extractor(specs=DEFAULT_SPECS, inception_weights: str | None = None, log=None) -> Extractor:
    """The first available extractor of ``specs`` (names, or one comma-separated string).

    An unavailable ``inception`` prints one line (to ``log``, default stderr) and the next spec is
    tried; an explicit ``classifier:PATH`` that cannot be loaded is a UserError.
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s]
    if not specs:
        raise UserError("--features: give at least one of inception, classifier:PATH, random_conv")
    for spec in specs:
        if spec == "inception":
            w = find_inception_weights(inception_weights)
            if w is None:
                log("features: no InceptionV3 ImageNet weights on disk (Keras cache ~/.keras/models/"
                    f"{INCEPTION_FILE}; set --inception_weights=PATH); not downloading, trying "
                    f"{','.join(specs[specs.index(spec) + 1:]) or 'nothing else'}")
                continue
            return inception(w)
        if spec.startswith("classifier:"):
            return classifier(spec.split(":", 1)[1])
        if spec == "random_conv":
            return random_conv()
        raise UserError(f"--features={spec}: unknown extractor (inception, classifier:PATH, random_conv)")
    raise UserError(f"--features={','.join(specs)}: none is available; add random_conv as a last resort")


def resolve_extractor(extractor=None) -> Extractor:
    """``extractor`` itself if it is an :class:`Extractor`, else :func:`get_extractor` of the spec
    (None: ``random_conv``); what the registry entries fid, kid and precision_recall take."""
    return extractor if isinstance(extractor, Extractor) else get_extractor(extractor or "random_conv")
