#!/usr/bin/env python3
"""Why is a run's finest pyramid level far from the data? Three diagnostics of one trained run.

    python bench/fine_band.py --model_dir=RUN [--seed=0] [--hairless] [--probe=none,translation]
                              [--probe_steps=300] [--mask=8] [--band_scales=0,4,8] [--threads=1]

RUN is a finished training run (``RUN/saved_model``, ``RUN/cache``), e.g. one of ``bench/quality.py``'s;
its EMA samples (seed ``1000 + seed``, as ``bench/quality.py`` draws them) are compared with its
training split.

1. **Band statistics** of the finest Laplacian band (binomial pyramid, 4 px border left out), real
   against samples: std per colour (luma Y = 0.299 R + 0.587 G + 0.114 B, chroma B - Y and R - Y:
   is the detail grey, like hairs and dots, or coloured), kurtosis (heavy tails: sparse lines and
   dots), and the lag-1 autocorrelation along rows (near 0: detail at the pixel scale; near 1:
   smooth, the band's energy sits at its low-frequency edge).
2. ``--hairless`` (phantom runs only): SWD per level, as multiples of the floor, of as many fresh
   phantoms rendered without hair (the training class mix, JPEG q95 like the training phantoms)
   against the training split, beside a control of fresh phantoms with hair drawn as usual: how far
   a generator that is perfect except that it never draws hair would be.
3. ``--probe``: a classifier two-sample test (Lopez-Paz & Oquab 2017, C2ST). A fresh
   ``dcgan_discriminator`` at the run's resolution, widths, minibatch stddev and init (the
   full-resolution discriminator of DCGAN and mod; LAPGAN's conditional level discriminators are
   not what is probed) is trained for ``--probe_steps`` steps on 3/4 of the real images
   against 3/4 of the samples (non-saturating loss, R1 at the run's gamma, Adam as the run), with
   each augmentation policy listed; its accuracy on the held-out quarters is printed at a few steps.
   ``--mask=M`` greys out the outer M px of both sets first, so a border frame cannot be the cue.
   ``--band_scales=S,...``: one probe per policy and scale, the probe D reading the image's finest
   Laplacian band times S beside it (``--d_band_scale``; default: the run's own setting).
   Near 0.5: this discriminator cannot tell (a weak training signal for the generator); near 1:
   the samples are easy to reject.

Numbers print as markdown-ready lines. Phantom rendering and the probe run on the CPU.
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quality  # noqa: E402  (bench/quality.py: the run's samples as it draws them; defines --threads)

flags.DEFINE_string("model_dir", None, "A finished training run (saved_model/ and cache/).")
flags.DEFINE_integer("seed", 0, "The run's seed (samples are drawn with 1000 + seed, as bench/quality.py).")
flags.DEFINE_boolean("hairless", False, "Score fresh phantoms without hair against the training split.")
flags.DEFINE_list("probe", [], "Augmentation policies of the two-sample discriminator test "
                  "(none, or DiffAugment ops joined by +: translation, cutout, translation+cutout); empty: no probe.")
flags.DEFINE_integer("probe_steps", 300, "Training steps of each probe discriminator.")
flags.DEFINE_integer("mask", 0, "Grey out this many border pixels of real and samples before the probe.")
flags.DEFINE_list("band_scales", [], "Probe discriminators that read the finest Laplacian band times each "
                  "scale (as --d_band_scale; 0: the plain D); empty: the run's own --d_band_scale.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS
BORDER = 4                      # band pixels left out on each side (the pyramid's reflect padding)
LUMA = np.array([0.299, 0.587, 0.114])


def finest_band(images: np.ndarray) -> np.ndarray:
    """The finest Laplacian band h_0 = x - u(d(x)) of uint8 images, in grey levels, border cut."""
    import tensorflow as tf
    from melano_tf.ops import pyramid
    band = pyramid.build_laplacian(tf.constant(images, tf.float32), 2, "binomial")[0].numpy()
    return band[:, BORDER:-BORDER, BORDER:-BORDER]


def band_stats(images: np.ndarray) -> dict:
    """Luma / chroma std, kurtosis and lag-1 row autocorrelation of the finest band."""
    from scipy.stats import kurtosis
    b = finest_band(images)
    y = b @ LUMA
    return {"std_luma": float(y.std()), "std_chroma_b": float((b[..., 2] - y).std()),
            "std_chroma_r": float((b[..., 0] - y).std()), "kurtosis": float(kurtosis(b.reshape(-1))),
            "lag1": float(np.mean(b[:, :, 1:] * b[:, :, :-1]) / np.mean(b ** 2))}


def swd_multiples(real: np.ndarray, other: np.ndarray) -> str:
    from melano_tf.metrics import METRICS, swd
    x = swd.floor_multiples(METRICS["swd"](real, other, seed=0))
    parts = [f"{r} px {x[r]:.2f}" for r in sorted(k for k in x if k != "mean")]
    return f"mean {x['mean']:.2f}x ({', '.join(parts)})"


def phantoms_like(labels: np.ndarray, resolution: int, hair) -> np.ndarray:
    """Fresh phantoms (seeds far from any training split) with the given labels, through JPEG q95."""
    from PIL import Image
    from melano_tf.data.phantom.compose import render
    out = []
    for i, lab in enumerate(labels):
        buf = io.BytesIO()
        Image.fromarray(render(900_000 + i, int(lab), resolution, hair=hair)).save(buf, "JPEG", quality=95)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def probe(real: np.ndarray, fake: np.ndarray, config: dict, policy: str, steps: int, seed: int = 0) -> str:
    """Held-out accuracy of a fresh full-resolution discriminator trained on real vs samples (C2ST)."""
    import keras
    import tensorflow as tf
    from melano_tf.gan import augment, losses, networks
    ops = () if policy == "none" else tuple(policy.split("+"))
    res = real.shape[1]
    to_float = lambda x: x.astype(np.float32) / 127.5 - 1.0  # noqa: E731
    r, f = to_float(real), to_float(fake)
    m = FLAGS.mask
    if m:
        for x in (r, f):
            x[:, :m], x[:, -m:], x[:, :, :m], x[:, :, -m:] = 0, 0, 0, 0
    n = min(len(r), len(f))
    cut = n * 3 // 4
    keras.utils.set_random_seed(seed)
    d = networks.dcgan_discriminator(res, config.get("base_filters", 128), config.get("min_filters", 32),
                                     mbstd_group=config.get("mbstd_group", 0), init=config.get("d_init", "he"),
                                     band_scale=config.get("d_band_scale", 0.0))
    opt = keras.optimizers.Adam(config.get("d_learning_rate", 2e-4), beta_1=config.get("beta_1", 0.0),
                                beta_2=config.get("beta_2", 0.99))
    gamma = float(config.get("r1_gamma", 0.0))
    def aug(x, s):
        return augment.diff_augment(x, s, ",".join(ops)) if ops else x

    @tf.function
    def step(xr, xf, s):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.nonsaturating_d_loss(d(aug(xr, s)), d(aug(xf, s + [0, 1]))))
            if gamma > 0:
                loss += tf.reduce_mean(losses.r1_penalty(lambda x: d(x), xr, gamma=gamma))
        grads = tape.gradient(loss, d.trainable_variables)
        opt.apply_gradients(zip(grads, d.trainable_variables))

    rng = np.random.default_rng(seed)
    marks, out = {50, 100, 200, steps // 2, steps}, []
    for t in range(1, steps + 1):
        step(tf.constant(r[rng.integers(0, cut, 32)]), tf.constant(f[rng.integers(0, cut, 32)]),
             tf.constant([t, seed], tf.int32))
        if t in marks:
            pr, pf = d(r[cut:n]).numpy().ravel(), d(f[cut:n]).numpy().ravel()
            out.append(f"{t}: {((pr > 0).mean() + (pf < 0).mean()) / 2:.2f}")
    return ", ".join(out)


def main(argv):
    del argv
    from melano_tf.errors import UserError
    from melano_tf.gan import augment
    for policy in FLAGS.probe:                 # checked before any work, named by the flag
        try:
            if policy != "none":
                augment.parse_policy(policy.replace("+", ","))
        except UserError as e:
            raise UserError(f"--probe={policy}: {e}") from None
    try:
        scales = [float(s) for s in FLAGS.band_scales]
        if any(not s >= 0 for s in scales):
            raise ValueError
    except ValueError:
        raise UserError(f"--band_scales={','.join(FLAGS.band_scales)}: give numbers >= 0") from None
    if FLAGS.threads:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    import json
    real, labels, fake = quality.real_and_fake(FLAGS.model_dir, FLAGS.seed)
    config = {}                       # the run's TrainConfig as saved (flat; the probe reads D's settings)
    path = os.path.join(FLAGS.model_dir, "config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    print(f"run {FLAGS.model_dir}: {len(real)} real training images, {len(fake)} samples, {real.shape[1]} px\n")
    print("| finest band | std luma | std chroma (B-Y / R-Y) | kurtosis | lag-1 autocorrelation |")
    print("|---|---:|---:|---:|---:|")
    for name, x in (("real", real), ("samples", fake)):
        s = band_stats(x)
        print(f"| {name} | {s['std_luma']:.2f} | {s['std_chroma_b']:.2f} / {s['std_chroma_r']:.2f} | "
              f"{s['kurtosis']:.1f} | {s['lag1']:.2f} |", flush=True)
    print(f"\nsamples SWD / floor: {swd_multiples(real, fake)}")
    if FLAGS.hairless:
        res = real.shape[1]
        print(f"fresh phantoms, hair as drawn (control): {swd_multiples(real, phantoms_like(labels, res, None))}")
        print(f"fresh phantoms without hair:             {swd_multiples(real, phantoms_like(labels, res, False))}",
              flush=True)
    for scale in scales or [config.get("d_band_scale", 0.0)]:
        for policy in FLAGS.probe:
            print(f"probe D ({policy}, mask {FLAGS.mask} px, band x{scale:g}): held-out accuracy at step "
                  f"{probe(real, fake, {**config, 'd_band_scale': scale}, policy, FLAGS.probe_steps)}", flush=True)


if __name__ == "__main__":
    from melano_tf import cli
    app.run(lambda argv: cli.guarded(lambda: main(argv))())   # a bad run folder or policy: one line, exit 2
