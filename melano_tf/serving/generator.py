"""The one client of an exported generator (``melano_tf.train.export``): load it, draw images.

Used by ``bin/synthesize``, ``bin/evaluate`` (``melano_tf.evaluation.evaluate``), the classifier's
generated melanoma (``melano_tf.classify.synthetic.sample_generator``) and ``bench/quality.py``.
The SavedModel's ``sample(seed int64, count int32[, label int32])`` signature is called once per
batch; batch ``j`` uses seed ``seed * 1_000_003 + j``, so a given ``(seed, batch_size)`` yields the
same images on any machine; another batch size yields other (equally valid) images. Within a call
every image gets its own pyramid level noise (``melano_tf.gan.lapgan.LAPGAN.latent_keys``).

A run folder is resolved to ``RUN/saved_model``; its class names come from ``RUN/cache/manifest.json``
(the labels the generator was trained with) and its settings from ``RUN/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Iterator

import numpy as np

from melano_tf.errors import UserError

SEED_STRIDE = 1_000_003


@dataclasses.dataclass
class Generator:
    """A loaded generator SavedModel and what is known about it."""

    path: str                 # the SavedModel folder
    name: str                 # the run's folder name (or the SavedModel's)
    run_dir: str | None
    class_names: tuple[str, ...]
    conditional: bool
    config: dict
    _fn: object = None

    @property
    def scheme(self) -> str:
        return self.config.get("scheme", "?")

    def label_of(self, cls: str | int | None) -> int | None:
        """``--class`` (a name or an index) -> label index; None for an unconditional generator."""
        if cls in (None, ""):
            return None
        if not self.conditional:
            raise UserError(f"--class={cls}: {self.path} is an unconditional generator (trained without "
                            "--conditional); it cannot be asked for a class")
        if isinstance(cls, str) and not cls.isdigit():
            if cls not in self.class_names:
                raise UserError(f"--class={cls}: unknown class; {self.name} knows "
                                f"{', '.join(self.class_names) or 'no class names (give an index)'}")
            return self.class_names.index(cls)
        k = int(cls)
        n = len(self.class_names)
        if n and not 0 <= k < n:
            raise UserError(f"--class={cls}: out of range for {n} classes ({', '.join(self.class_names)})")
        return k

    def sample(self, seed: int, count: int, label: int | None = None) -> np.ndarray:
        """uint8 (count, R, R, 3) from one call of the ``sample`` signature."""
        import tensorflow as tf
        kw = {"seed": tf.constant(int(seed), tf.int64), "count": tf.constant(int(count), tf.int32)}
        if self.conditional:
            kw["label"] = tf.constant(0 if label is None else int(label), tf.int32)
        return self._fn(**kw)["images_uint8"].numpy()


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def load_generator(model_dir: str | None = None, saved_model: str | None = None,
                   flag: str = "--saved_model") -> Generator:
    """Load ``RUN/saved_model`` (``model_dir``) or a SavedModel folder; UserError when unusable
    (naming ``flag``, the option the SavedModel path came from)."""
    if bool(model_dir) == bool(saved_model):
        raise UserError("give exactly one of --model_dir=RUN and --saved_model=PATH")
    if model_dir:
        if not os.path.isdir(model_dir):
            raise UserError(f"--model_dir={model_dir}: no such folder")
        path = os.path.join(model_dir, "saved_model")
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UserError(f"--model_dir={model_dir}: no saved_model/ in it (it is written when training "
                            "reaches --train_steps or its --max_minutes)")
        run_dir = model_dir
    else:
        path = saved_model
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise UserError(f"{flag}={path}: not a SavedModel folder (no saved_model.pb)")
        parent = os.path.dirname(os.path.abspath(path))
        run_dir = parent if os.path.isfile(os.path.join(parent, "config.json")) else None
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001  (TF raises many kinds for a broken SavedModel)
        raise UserError(f"{flag if saved_model else '--model_dir'}={path}: not a loadable SavedModel "
                        f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if "sample" not in loaded.signatures:
        raise UserError(f"{flag if saved_model else '--model_dir'}={path}: the SavedModel has no 'sample' signature (has: "
                        f"{', '.join(loaded.signatures) or 'none'}); export it with melano_tf")
    fn = loaded.signatures["sample"]
    conditional = "label" in fn.structured_input_signature[1]
    config = _read_json(os.path.join(run_dir, "config.json")) if run_dir else {}
    manifest = _read_json(os.path.join(run_dir, "cache", "manifest.json")) if run_dir else {}
    names = tuple(manifest.get("class_names", ()))
    name = os.path.basename(os.path.abspath(run_dir or path))
    g = Generator(os.path.abspath(path), name, run_dir and os.path.abspath(run_dir), names, conditional, config)
    g._fn = fn
    g._loaded = loaded  # keep the trackable objects alive
    return g


def training_proportions(gen: Generator) -> dict | None:
    """label -> fraction of the generator's training split (from ``RUN/cache/manifest.json``)."""
    if not gen.run_dir:
        return None
    counts = _read_json(os.path.join(gen.run_dir, "cache", "manifest.json")).get("class_counts", {}).get("train", {})
    props = {gen.class_names.index(k): v for k, v in counts.items() if k in gen.class_names and v > 0}
    return props or None


def batch_seed(seed: int, batch: int) -> int:
    return int(seed) * SEED_STRIDE + int(batch)


def plan_labels(num_images: int, label: int | None, proportions: dict | None, conditional: bool):
    """Per-image labels: ``label`` for all; else, for a conditional generator, ``proportions``
    (label -> fraction, e.g. the real training set's) rounded to exact counts; None when unconditional."""
    if not conditional:
        return None
    if label is not None:
        return np.full(num_images, label, np.int64)
    props = proportions or {0: 1.0}
    keys = sorted(props)
    quota = np.array([props[k] for k in keys], np.float64)
    quota = num_images * quota / quota.sum()
    counts = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable")[:num_images - counts.sum()]:
        counts[i] += 1
    return np.repeat(np.array(keys, np.int64), counts)


def generate(gen: Generator, num_images: int, seed: int = 0, batch_size: int = 32,
             labels: np.ndarray | None = None, progress: bool = True,
             prefix: str = "synthesize") -> Iterator[tuple[np.ndarray, np.ndarray | None, int]]:
    """Yield ``(images uint8, labels or None, batch seed)`` batches until ``num_images`` are drawn.

    A batch never mixes labels (the signature takes one): with ``labels``, batches are cut at
    label changes too. Progress: one line on stderr, refreshed (a new line every 10 s off a tty).
    """
    if num_images < 1:
        raise UserError(f"--num_images={num_images}: must be >= 1")
    if batch_size < 1:
        raise UserError(f"--batch_size={batch_size}: must be >= 1")
    tty = progress and sys.stderr.isatty()
    t0 = last = time.monotonic()
    done, b = 0, 0
    while done < num_images:
        n = min(batch_size, num_images - done)
        lab = None
        if labels is not None:
            lab = int(labels[done])
            same = np.flatnonzero(labels[done:done + n] != lab)
            n = int(same[0]) if len(same) else n
        s = batch_seed(seed, b)
        images = gen.sample(s, n, lab)
        yield images, (None if lab is None else np.full(n, lab, np.int64)), s
        done += n
        b += 1
        now = time.monotonic()
        if progress and (done == num_images or now - last >= (0.5 if tty else 10.0)):
            last = now
            rate = done / max(now - t0, 1e-9)
            line = f"{prefix} {gen.name}: {done}/{num_images} images, {rate:.1f} img/s"
            sys.stderr.write(("\r" + line + ("\n" if done == num_images else "")) if tty else line + "\n")
            sys.stderr.flush()


def sample_all(gen: Generator, num_images: int, seed: int = 0, batch_size: int = 32,
               labels: np.ndarray | None = None, progress: bool = True, prefix: str = "sampling"):
    """All of :func:`generate` in memory: (uint8 (N, R, R, 3), labels (N,) or None)."""
    imgs, labs = [], []
    for x, y, _ in generate(gen, num_images, seed, batch_size, labels, progress, prefix):
        imgs.append(x)
        labs.append(y)
    return np.concatenate(imgs), (None if labs[0] is None else np.concatenate(labs))
