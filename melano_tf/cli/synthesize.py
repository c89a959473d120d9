"""``synthesize``: draw N images from a trained generator into PNG files plus ``manifest.json``.

    synthesize --model_dir=RUN --num_images=500 --out=DIR [--class=melanoma] [--seed=0] [--batch_size=32]
    synthesize --saved_model=RUN/saved_model ...

Files: ``DIR/000000.png`` ... and ``DIR/manifest.json`` (the generator, seed, batch size, and per
image its file, label, class and batch seed). Deterministic: the same seed and batch size give the
same images (batch j uses seed ``seed * 1_000_003 + j``, see ``melano_tf.serving.generator``). A
conditional generator without ``--class`` draws the classes in the proportions of its training set.
"""

from __future__ import annotations

import json
import os
import shutil

from melano_tf import cli, fileio
from melano_tf import flags as mflags
from melano_tf.errors import UserError

MANIFEST = "manifest.json"
STAGING = ".synthesize-staging"


def _prepare_out(out: str) -> list[str]:
    """Refuse a folder holding other files; the files of an earlier synthesis there (removed only
    once the new images are all written, so a failed run leaves them intact)."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(f"--out={out}: exists and is not a folder")
    if not os.path.isdir(out):
        os.makedirs(out)
        return []
    for stale in (n for n in os.listdir(out) if n.startswith(STAGING)):   # left by a killed run
        shutil.rmtree(os.path.join(out, stale), ignore_errors=True)
    names = set(os.listdir(out))
    if not names:
        return []
    if MANIFEST not in names:
        raise UserError(f"--out={out}: holds other files and no {MANIFEST}; give a new or empty folder")
    try:
        with open(os.path.join(out, MANIFEST), encoding="utf-8") as f:
            old = json.load(f)
        files = [os.path.basename(im["file"]) for im in old.get("images", [])]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--out={out}: unreadable {MANIFEST}; give a new or empty folder")
    return [n for n in files if os.path.isfile(os.path.join(out, n))] + [MANIFEST]


def synthesize(model_dir=None, saved_model=None, num_images: int = 64, out: str = "synthetic",
               cls=None, seed: int = 0, batch_size: int = 32, progress: bool = True) -> str:
    """Write the images and the manifest; returns the manifest path."""
    from melano_tf.serving import generator as sampling
    gen = sampling.load_generator(model_dir, saved_model)
    label = gen.label_of(cls)
    labels = sampling.plan_labels(num_images, label, sampling.training_proportions(gen), gen.conditional)
    with fileio.writing(out, "the synthetic images"):  # a full disk: one line, no half-written PNG
        path, resolution = _write(gen, out, num_images, labels, cls, seed, batch_size, progress)
    print(f"synthesized {num_images} images at {resolution} px from {gen.name} -> {out} "
          f"(seed {seed}, batch size {batch_size})")
    return path


def _write(gen, out, num_images, labels, cls, seed, batch_size, progress) -> tuple[str, int]:
    """Write into a staging folder inside ``out``, then swap the new set in for the earlier one."""
    earlier = _prepare_out(out)
    staging = os.path.join(out, f"{STAGING}-{os.getpid()}")
    try:
        manifest = _write_into(gen, staging, num_images, labels, cls, seed, batch_size, progress)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for name in earlier:   # the new set is complete: swap it in (renames need no space)
        os.remove(os.path.join(out, name))
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    os.rmdir(staging)
    return os.path.join(out, MANIFEST), manifest["resolution"]


def _write_into(gen, out, num_images, labels, cls, seed, batch_size, progress) -> dict:
    from melano_tf import viz
    from melano_tf.serving import generator as sampling
    os.makedirs(out, exist_ok=True)
    entries, i = [], 0
    for images, labs, s in sampling.generate(gen, num_images, seed, batch_size, labels, progress):
        for k, img in enumerate(images):
            name = f"{i:06d}.png"
            viz.save_png(os.path.join(out, name), img)
            lab = None if labs is None else int(labs[k])
            entries.append({"file": name, "label": lab,
                            "class": gen.class_names[lab] if lab is not None and lab < len(gen.class_names) else None,
                            "batch_seed": s, "index_in_batch": k})
            i += 1
    manifest = {"generator": gen.path, "run": gen.run_dir, "scheme": gen.scheme, "seed": seed,
                "batch_size": batch_size, "num_images": num_images, "class": cls or None,
                "conditional": gen.conditional, "class_names": list(gen.class_names),
                "resolution": int(images.shape[1]), "images": entries}
    fileio.write_json_atomic(os.path.join(out, MANIFEST), manifest, indent=1)
    return manifest


def main():
    F = mflags.FLAGS
    if not F.out:
        raise UserError("--out is required (the folder for the PNG files)")
    synthesize(model_dir=F.model_dir, saved_model=F.saved_model, num_images=F.num_images, out=F.out,
               cls=F["class"].value, seed=F.seed, batch_size=F.batch_size)


def run() -> None:
    cli.run(main, mflags.define_synthesize_flags)
