"""Quality benchmark: do the samples match the data? The yardstick of every training recipe.

For each row (a name, a flagfile and extra flags) and each seed, train on built-in phantoms with
``bin/train_lapgan`` (a subprocess; a finished run is reused, a killed one resumes), then score the
exported EMA generator against the run's own training split:

* SWD x1e3 per pyramid level and mean, as a multiple of the real-vs-real floor (two real halves)
* colour W1 per channel (RGB and Lab), as a multiple of the same W1 between two real halves
* MS-SSIM of random sample pairs beside that of real pairs (diversity; lower = more diverse)
* KID x1e3 and improved precision / recall (Kynkaenniemi et al. 2019, k = 3), in the feature
  space of a phantom classifier trained here on real phantoms (the lesion-type features that
  matter; ``--features=random_conv`` uses the untrained extractor instead)
* border: detail energy in the outer 3 px ring of the finest Laplacian band over the interior's,
  samples' ratio / real ratio (1 = none; a zero-padding frame shows as > 1)
* class coverage: the share of samples that classifier assigns to each class against the real
  class frequencies, and the largest gap in points (over ``--class_samples`` samples of their own,
  so the column's sampling error is well under its 10-point target); beside it the classifier's
  own gap on the real images (its BN statistics are recomputed for its final weights,
  ``--classifier_precise_bn``)

Each run leaves ``OUT/<row>/seed<S>.png`` (64 samples) and ``OUT/real.png``; ``OUT/runs.jsonl``
holds every run's figures, ``OUT/table.md`` the mean +- std per row. Example (the quick start,
3 seeds)::

    python bench/quality.py --row=quickstart:configs/quickstart.cfg --seeds=0,1,2 --out=bench_out/quality

Every row trains to its ``--train_steps``: the benchmark passes ``--max_minutes=0`` before the
row's own flags, so a flagfile's time budget does not make a row's figures depend on the machine.

Rows: ``--row=NAME:FLAGFILE`` or ``--row="NAME:FLAGFILE:--flag=v --flag2=w"`` (repeatable). ``--jobs``
trains that many runs at once (a GPU machine with many cores); scoring is sequential.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from melano_tf import console  # noqa: E402  (after the path set-up, so an uninstalled checkout runs)

flags.DEFINE_multi_string("row", [], "NAME:FLAGFILE[:EXTRA FLAGS] (repeatable).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (training, phantoms and sampling).")
flags.DEFINE_string("out", "bench_out/quality", "Output folder (runs/, grids, runs.jsonl, table.md).")
flags.DEFINE_string("extra", "", "Flags added to every row's training command (e.g. --train_steps=500).")
flags.DEFINE_integer("jobs", 1, "Training runs at once.")
flags.DEFINE_integer("threads", 0, "TensorFlow intra/inter-op threads per training run (0: TensorFlow's "
                     "default; with --jobs=2 on 2 cores, 1 each avoids oversubscription).")
flags.DEFINE_enum("features", "classifier", ["classifier", "random_conv"], "Feature space of KID and P/R.")
flags.DEFINE_integer("classifier_epochs", 6, "Epochs of the phantom classifier.")
flags.DEFINE_integer("classifier_phantoms", 4000, "Phantoms the phantom classifier trains on (its own set).")
flags.DEFINE_integer("classifier_precise_bn", 60, "Batches of 64 of its own phantoms from which the phantom "
                     "classifier's BN statistics are recomputed for its final weights (0: Keras' moving "
                     "averages, the feature space of bench_out/s9 and s10).")
flags.DEFINE_integer("class_samples", 4000, "Samples the class coverage is measured on (a draw of their own, "
                     "seed 2000 + S): a share's binomial error is ~sqrt(p(1-p)/n), 0.7 points at 4000 against "
                     "1.7 at the ~790 samples (as many as real images) of the other columns.")
flags.DEFINE_boolean("train_only", False, "Only train (no scoring).")
FLAGS = flags.FLAGS

CHANNELS = {"rgb": ("R", "G", "B"), "lab": ("L", "a", "b")}


def _say(msg: str) -> None:
    console.say(f"[quality] {msg}")


def parse_row(spec: str) -> tuple[str, str, list[str]]:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not os.path.isfile(parts[1]):
        raise app.UsageError(f"--row={spec}: expected NAME:FLAGFILE[:EXTRA FLAGS] with an existing flagfile")
    return parts[0], parts[1], shlex.split(parts[2]) if len(parts) > 2 else []


def run_dir(name: str, seed: int) -> str:
    return os.path.join(FLAGS.out, "runs", f"{name}_seed{seed}")


def binary(flagfile: str, extra: list[str]) -> str:
    """``dcgan`` or ``lapgan``: the training binary of the row's last ``--scheme=`` (extra flags win)."""
    scheme = "lapgan"
    with open(flagfile, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    for arg in lines + shlex.split(FLAGS.extra) + list(extra):
        if arg.startswith("--scheme="):
            scheme = arg.split("=", 1)[1]
    return "dcgan" if scheme == "dcgan" else "lapgan"


def train(name: str, flagfile: str, extra: list[str], seed: int) -> tuple[str, float]:
    """Train one run (reused when its export exists); returns (run folder, wall seconds)."""
    model_dir = run_dir(name, seed)
    done = os.path.join(model_dir, "bench_train.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return model_dir, json.load(f)["seconds"]
    os.makedirs(model_dir, exist_ok=True)
    cmd = [sys.executable, os.path.join(ROOT, "bin", f"train_{binary(flagfile, extra)}"), f"--flagfile={flagfile}",
           f"--model_dir={model_dir}", f"--seed={seed}", "--max_minutes=0", *shlex.split(FLAGS.extra), *extra]
    t0 = time.time()
    with open(os.path.join(model_dir, "bench_train.log"), "a", encoding="utf-8") as log:
        env = dict(os.environ)
        if FLAGS.threads > 0:
            env.update(TF_NUM_INTRAOP_THREADS=str(FLAGS.threads), TF_NUM_INTEROP_THREADS=str(FLAGS.threads))
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"training {name} seed {seed} failed (rc {rc}); see {model_dir}/bench_train.log")
    with open(done, "w", encoding="utf-8") as f:
        json.dump({"seconds": seconds, "command": cmd}, f)
    _say(f"trained {name} seed {seed} in {seconds:.0f} s")
    return model_dir, seconds


# ------------------------------------------------------------------------------------------ scoring

def load_labelled(cache_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    from melano_tf.evaluation.evaluate import load_split
    return load_split(cache_dir, split, with_labels=True)


class PhantomClassifier:
    """A small CNN trained on real phantoms: class coverage of samples and a lesion feature space.

    Trained on its own phantom set (``--classifier_phantoms`` images in the ISIC mix, written as
    JPEG q95 at the runs' resolution like the training phantoms, master seed 7919 so no image is in
    any run's training split), then checked on the first run's
    validation split. The trained model is saved in ``OUT/phantom_classifier_<R>px.keras`` and
    reused by every later invocation with the same OUT, so rows scored on different days share
    one feature space (KID, precision/recall and class shares move with the classifier).
    """

    SEED = 7919

    def __init__(self, out_dir: str, cache_dir: str, epochs: int, num_images: int, precise_bn_batches: int,
                 seed: int = 0):
        import keras
        from melano_tf import fileio
        xv, yv = load_labelled(cache_dir, "validation")
        res = xv.shape[1]
        suffix = f"_precise_bn{precise_bn_batches}" if precise_bn_batches else ""
        path = os.path.join(out_dir, f"phantom_classifier_{res}px{suffix}.keras")
        if os.path.exists(path):
            self.model = keras.models.load_model(path)
        else:
            x, y = self._phantoms(out_dir, res, num_images)
            self.model = fit_classifier(self._float(x), y, epochs, seed, precise_bn_batches)
            with fileio.atomic_path(path, suffix=".keras") as tmp:
                self.model.save(tmp)
        self.num_classes = int(self.model.output_shape[-1])
        self.val_accuracy = float((self.predict(xv).argmax(1) == yv).mean())
        self.features_model = keras.Model(self.model.inputs, self.model.get_layer("pool").output)

    @classmethod
    def _phantoms(cls, out_dir: str, res: int, num_images: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image
        from melano_tf.data import phantom
        folder = os.path.join(out_dir, f"classifier_phantoms_{res}px")
        _say(f"phantom classifier: writing {num_images} phantoms of its own to {folder}")
        phantom.write_isic_layout(folder, num_images=num_images, resolution=res, seed=cls.SEED, progress=False)
        rows = phantom.plan(num_images, cls.SEED)
        x = np.stack([np.asarray(Image.open(os.path.join(folder, phantom.IMAGES_DIR, f"{i}.jpg")).convert("RGB"))
                      for i, _, _ in rows])
        return x, np.array([lab for _, _, lab in rows], np.int64)

    @staticmethod
    def _float(x):
        return x.astype(np.float32) / 127.5 - 1.0

    def predict(self, x):
        return self.model.predict(self._float(x), batch_size=256, verbose=0)

    def features(self, x):
        return self.features_model.predict(self._float(x), batch_size=256, verbose=0)


def fit_classifier(x: np.ndarray, y: np.ndarray, epochs: int, seed: int, precise_bn_batches: int):
    """``small_cnn`` fitted to float images ``x`` (labels ``y``), Adam 1e-3, batches of 64; then, with
    ``precise_bn_batches > 0``, BN statistics recomputed for the final weights
    (:func:`melano_tf.classify.train.precise_bn`). Keras' moving averages (momentum 0.99 over ~375
    steps) left this classifier calling a third of the real melanoma and half the real keratoses
    "nevus" (accuracy 0.87 on a run's real training split, its own class gap there 13 points);
    with precise BN 0.99 and 0.4 points (BENCHMARKS.md, "Quality", session 15)."""
    import keras
    import tensorflow as tf
    from melano_tf.classify.model import small_cnn
    from melano_tf.classify.train import precise_bn
    keras.utils.set_random_seed(seed)
    model = small_cnn(x.shape[1], int(y.max()) + 1)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    if precise_bn_batches:
        ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(64)
        precise_bn(model, ds, precise_bn_batches)
    return model


def halves(x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    p = np.random.default_rng(seed).permutation(len(x))
    return x[p[: len(x) // 2]], x[p[len(x) // 2:]]


def colour_w1(h_a: dict, h_b: dict) -> dict:
    from melano_tf.metrics import histograms
    d = histograms.histogram_distances(h_a, h_b)
    return {f"{s}/{c}": d[f"hist/{s}/{c}/w1"] for s, chans in CHANNELS.items() for c in chans}


BORDER = 3   # px: the ring of the finest Laplacian band whose energy is compared with the interior


def border_energy(x: np.ndarray) -> float:
    """std of the finest Laplacian band in the outer ``BORDER`` px ring / std in the interior.

    A generator whose convs pad with zeros draws a frame a few pixels inside the border: detail
    energy there well above the interior's. Real photographs have their own ratio (vignette
    edges), so the column reports the samples' ratio over the real one (1 = no frame)."""
    import tensorflow as tf
    from melano_tf.ops import pyramid
    band = pyramid.build_laplacian(tf.constant(x[:400].astype(np.float32)), 2)[0].numpy()
    ring = np.ones(band.shape[1:3], bool)
    ring[BORDER:-BORDER, BORDER:-BORDER] = False
    return float(band[:, ring].std() / band[:, ~ring].std())


def border_score(real: np.ndarray, fake: np.ndarray) -> dict:
    return {"border_x": border_energy(fake) / border_energy(real)}


def real_and_fake(model_dir: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training split, its labels, as many EMA samples drawn with seed ``1000 + seed``) of a run.

    A class-conditional generator is asked for each class in its training split's shares (as
    ``bin/evaluate`` does); its samples come back grouped by label, so they are shuffled (seeded)
    before the grid and the MS-SSIM pairs see them."""
    from melano_tf.serving import generator as sampling
    real, real_y = load_labelled(os.path.join(model_dir, "cache"), "train")
    gen = sampling.load_generator(model_dir=model_dir)
    labels = sampling.plan_labels(len(real), None, sampling.training_proportions(gen), gen.conditional)
    fake, _ = sampling.sample_all(gen, len(real), seed=1000 + seed, batch_size=64, labels=labels, progress=False)
    if labels is not None:
        fake = fake[np.random.default_rng(seed).permutation(len(fake))]
    return real, real_y, fake


def class_coverage(model_dir: str, seed: int, classifier: "PhantomClassifier", real_y: np.ndarray) -> dict:
    """Shares of ``--class_samples`` EMA samples (seed ``2000 + seed``) per class the classifier
    assigns, against the training split's label frequencies; the largest gap in points."""
    from melano_tf.serving import generator as sampling
    gen = sampling.load_generator(model_dir=model_dir)
    n = FLAGS.class_samples
    labels = sampling.plan_labels(n, None, sampling.training_proportions(gen), gen.conditional)
    fake, _ = sampling.sample_all(gen, n, seed=2000 + seed, batch_size=256, labels=labels, progress=False)
    k = classifier.num_classes
    share_fake = np.bincount(classifier.predict(fake).argmax(1), minlength=k) / n
    share_real = np.bincount(real_y, minlength=k) / len(real_y)
    return {"class_share": [round(float(v), 3) for v in share_fake],
            "class_share_real": [round(float(v), 3) for v in share_real],
            "class_gap_pts": float(100 * np.abs(share_fake - share_real).max()), "class_samples": n}


def _border_for(model_dir: str, seed: int) -> dict:
    """The border column of a run scored before it existed (the same samples as :func:`score`)."""
    real, _, fake = real_and_fake(model_dir, seed)
    return border_score(real, fake)


def score(model_dir: str, seed: int, classifier: PhantomClassifier | None) -> dict:
    """Every figure of one run against its training split (samples: as many as real images)."""
    from melano_tf import viz
    from melano_tf.metrics import METRICS, histograms, swd
    from melano_tf.metrics import features as feats
    from melano_tf.metrics.kid import kid_from_activations
    from melano_tf.metrics.precision_recall import precision_recall_from_activations
    real, real_y, fake = real_and_fake(model_dir, seed)
    out = {}
    s = METRICS["swd"](real, fake, seed=seed)
    x = swd.floor_multiples(s)
    for r in sorted(k for k in x if k != "mean"):
        out[f"swd_x/{r}"] = x[r]
    out["swd"] = s["swd/mean"]
    out["swd_floor"] = s["swd_floor/mean"]
    out["swd_x"] = x["mean"]
    a, b = halves(real, seed)
    spaces = tuple(CHANNELS)
    w_fake = colour_w1(histograms.color_histograms(real, spaces), histograms.color_histograms(fake, spaces))
    w_real = colour_w1(histograms.color_histograms(a, spaces), histograms.color_histograms(b, spaces))
    for k in w_fake:
        out[f"w1_x/{k}"] = w_fake[k] / max(w_real[k], 1e-6)
    out["w1_x"] = float(np.mean([out[f"w1_x/{k}"] for k in w_fake]))
    m = METRICS["msssim"](real, fake, num_pairs=500, seed=seed)
    out["msssim"], out["msssim_real"] = m["msssim/fake"], m["msssim/real"]
    out.update(border_score(real, fake))
    if classifier is not None:
        extract = classifier.features
    else:
        extract = feats.random_conv()
    act_r, act_f = np.asarray(extract(real)), np.asarray(extract(fake))
    act_a, act_b = np.asarray(extract(a)), np.asarray(extract(b))
    kid, _ = kid_from_activations(act_r, act_f, 50, min(len(real), len(fake), 500), seed)
    out["kid_x1e3"] = 1e3 * kid
    pr = precision_recall_from_activations(act_r, act_f)
    out["precision"], out["recall"] = pr["precision"], pr["recall"]
    pr_real = precision_recall_from_activations(act_a, act_b)
    out["precision_real"], out["recall_real"] = pr_real["precision"], pr_real["recall"]
    if classifier is not None:
        out.update(class_coverage(model_dir, seed, classifier, real_y))
        k = classifier.num_classes
        share_real = np.bincount(real_y, minlength=k) / len(real_y)
        # the yardstick's own error: the same classifier on the real images (0 for a perfect one)
        share_pred_real = np.bincount(classifier.predict(real).argmax(1), minlength=k) / len(real)
        out["class_gap_real_pts"] = float(100 * np.abs(share_pred_real - share_real).max())
    grid = os.path.join(FLAGS.out, os.path.basename(model_dir).rsplit("_seed", 1)[0], f"seed{seed}.png")
    os.makedirs(os.path.dirname(grid), exist_ok=True)
    viz.save_png(grid, viz.grid(fake[:64], 8))
    real_grid = os.path.join(FLAGS.out, "real.png")
    if not os.path.exists(real_grid):
        viz.save_png(real_grid, viz.grid(real[:64], 8))
    out["grid"] = os.path.relpath(grid, FLAGS.out)
    return out


# ------------------------------------------------------------------------------------------ table

COLUMNS = [("swd_x", "SWD / floor", 2), ("w1_x", "colour W1 / real", 2), ("border_x", "border / real", 2),
           ("msssim", "MS-SSIM", 3),
           ("kid_x1e3", "KID x1e3", 1), ("precision", "precision", 2), ("recall", "recall", 2),
           ("class_gap_pts", "class gap (pts)", 1), ("train_seconds", "train s", 0)]


def table(rows: list[dict]) -> str:
    names = list(dict.fromkeys(r["row"] for r in rows))
    levels = sorted({k for r in rows for k in r if k.startswith("swd_x/")}, key=lambda k: int(k.split("/")[1]))
    head = ["row", "seeds"] + [c[1] for c in COLUMNS[:1]] + [f"SWD/floor {k.split('/')[1]}px" for k in levels] \
        + [c[1] for c in COLUMNS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = {}
    for name in names:
        rs = [r for r in rows if r["row"] == name]

        def cell(key, nd):
            v = np.array([r[key] for r in rs if key in r], float)
            if not len(v):
                return ""
            return f"{v.mean():.{nd}f} ± {v.std():.{nd}f}" if len(v) > 1 else f"{v.mean():.{nd}f}"
        cells = [name, str(len(rs)), cell("swd_x", 2)] + [cell(k, 2) for k in levels] \
            + [cell(k, nd) for k, _, nd in COLUMNS[1:]]
        lines.append("| " + " | ".join(cells) + " |")
        for k in ("msssim_real", "precision_real", "recall_real", "swd_floor", "class_share_real",
                  "class_gap_real_pts"):
            if not ref.get(k):                 # the first row that has it (older rows may lack a column)
                ref[k] = [r[k] for r in rs if k in r]
    notes = []
    if ref.get("swd_floor"):
        notes.append(f"real-vs-real: SWD floor x1e3 {np.mean(ref['swd_floor']):.1f}")
    if ref.get("msssim_real"):
        notes.append(f"MS-SSIM of real pairs {np.mean(ref['msssim_real']):.3f}")
    if ref.get("precision_real"):
        notes.append(f"precision / recall of two real halves {np.mean(ref['precision_real']):.2f} / "
                     f"{np.mean(ref['recall_real']):.2f}")
    if ref.get("class_share_real"):
        notes.append(f"real class shares {ref['class_share_real'][0]}")
    if ref.get("class_gap_real_pts"):
        notes.append(f"class gap of the real images themselves (the phantom classifier's error) "
                     f"{np.mean(ref['class_gap_real_pts']):.1f} pts")
    return "\n".join(lines) + "\n\n" + "; ".join(notes) + "\n"


def main(argv):
    del argv
    if not FLAGS.row:
        raise app.UsageError("give at least one --row=NAME:FLAGFILE")
    rows = [parse_row(r) for r in FLAGS.row]
    seeds = [int(s) for s in FLAGS.seeds]
    os.makedirs(FLAGS.out, exist_ok=True)
    jobs = [(name, ff, extra, s) for name, ff, extra in rows for s in seeds]
    with ThreadPoolExecutor(max(1, FLAGS.jobs)) as pool:
        trained = list(pool.map(lambda j: (j, *train(*j)), jobs))
    if FLAGS.train_only:
        return
    results_path = os.path.join(FLAGS.out, "runs.jsonl")
    previous = {}
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                    previous[(r["row"], r["seed"], r["model_dir"])] = r
                except (ValueError, KeyError):
                    continue
    classifier = None

    def phantom_classifier(model_dir):
        nonlocal classifier
        if FLAGS.features == "classifier" and classifier is None:
            classifier = PhantomClassifier(FLAGS.out, os.path.join(model_dir, "cache"), FLAGS.classifier_epochs,
                                           FLAGS.classifier_phantoms, precise_bn_batches=FLAGS.classifier_precise_bn)
            _say(f"phantom classifier: validation accuracy {classifier.val_accuracy:.3f}")
        return classifier

    all_rows = []
    for (name, _, _, seed), model_dir, seconds in trained:
        key = (name, seed, model_dir)
        if key in previous:
            r = previous[key]
            old = dict(r)
            if "border_x" not in r:            # scored before the column existed
                r = {**r, **_border_for(model_dir, seed)}
            recount = FLAGS.features == "classifier" and "class_gap_pts" in r
            if recount and r.get("class_samples") != FLAGS.class_samples:     # scored on another sample count
                r = {**r, **class_coverage(model_dir, seed, phantom_classifier(model_dir),
                                           load_labelled(os.path.join(model_dir, "cache"), "train")[1])}
            if r != old:
                with open(results_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
            all_rows.append(r)
            continue
        phantom_classifier(model_dir)
        t0 = time.time()
        r = {"row": name, "seed": seed, "model_dir": model_dir, "train_seconds": seconds,
             **score(model_dir, seed, classifier)}
        if classifier is not None:
            r["classifier_val_accuracy"] = classifier.val_accuracy
        _say(f"{name} seed {seed}: SWD {r['swd_x']:.2f}x floor, colour W1 {r['w1_x']:.2f}x, "
             f"P/R {r['precision']:.2f}/{r['recall']:.2f}, class gap {r.get('class_gap_pts', float('nan')):.1f} pts "
             f"({time.time() - t0:.0f} s)")
        with open(results_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(r) + "\n")
        all_rows.append(r)
    text = table(all_rows)
    from melano_tf import fileio
    fileio.write_text_atomic(os.path.join(FLAGS.out, "table.md"), text)
    print(text)


if __name__ == "__main__":
    app.run(main)
