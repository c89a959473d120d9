"""Checkpoint I/O of a training run: the resume check, restore (newest readable checkpoint first),
save (only finite weights), and what a failed restore or write tells the user."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from melano_tf import config as cfg
from melano_tf import console
from melano_tf.errors import TrainingDiverged, UserError

#: Settings that change the checkpoint's object graph without being structural: mixed_float16 wraps
#: the optimizers in loss scaling, ADA adds its probability. Named when a restore fails.
GRAPH_FIELDS = ("precision", "augment")


def check_resume(config: cfg.TrainConfig) -> cfg.TrainConfig | None:
    """The saved config if the run folder holds a run to resume (else None); refuses one with other
    structural settings."""
    path = os.path.join(config.model_dir, "config.json")
    ckpt_dir = os.path.join(config.model_dir, "checkpoints")
    if not (os.path.exists(path) and tf.train.latest_checkpoint(ckpt_dir)):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            saved = cfg.TrainConfig.from_dict(json.load(f))
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path}: unreadable run configuration ({e}); use a new --model_dir") from None
    diffs = cfg.structural_differences(saved, dataclasses.replace(config, num_classes=saved.num_classes))
    if diffs:
        raise UserError(f"--model_dir={config.model_dir} holds a run with other settings, refusing to resume: "
                        + "; ".join(diffs))
    return saved


def graph_hint(saved: cfg.TrainConfig | None, config: cfg.TrainConfig) -> str:
    """Why a restore can fail although nothing structural changed: the flags in GRAPH_FIELDS."""
    if saved is None:
        return ""
    diffs = [f"--{k} (saved {getattr(saved, k)!r}, now {getattr(config, k)!r})"
             for k in GRAPH_FIELDS if getattr(saved, k) != getattr(config, k)]
    if not diffs:
        return ""
    return ("; the checkpoints were written with other " + ", ".join(diffs)
            + ", which changes what they hold: resume with the saved values")


def loss_scale(optimizer):
    scale = getattr(optimizer, "dynamic_scale", None)
    return None if scale is None else float(np.asarray(scale))


def finite_weights(gan) -> bool:
    # All weights, also BN moving statistics, the EMA generators (samples, export) and optimizer slots.
    models = gan.generators + gan.discriminators + gan.ema_generators + list(gan.recon_decoders.values())
    variables = [v for m in models for v in m.weights] + gan.g_optimizer.variables + gan.d_optimizer.variables
    return all(bool(np.isfinite(np.asarray(v)).all()) for v in variables)


def restore(ckpt, ckpt_dir: str, chief: bool, hint: str = "") -> str:
    """Restore the newest readable checkpoint of ckpt_dir's index, falling back to older ones;
    ``hint`` (:func:`graph_hint`) is added to the error when none can be read."""
    state = tf.train.get_checkpoint_state(ckpt_dir)
    listed = list(state.all_model_checkpoint_paths)
    if chief:  # shards of a write that a crash interrupted (never in the index)
        for stale in tf.io.gfile.glob(os.path.join(ckpt_dir, "*_temp")):
            shutil.rmtree(stale, ignore_errors=True)
    paths = [state.model_checkpoint_path] + [p for p in reversed(listed) if p != state.model_checkpoint_path]
    errors = []
    for path in paths:
        try:
            ckpt.restore(path).assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - a damaged file raises anything from IndexError to DataLossError
            errors.append(f"{os.path.basename(path)}: {type(e).__name__}: {(str(e).strip() or '?').splitlines()[0]}")
            console.say(f"checkpoint {path} is unreadable ({errors[-1]}); trying an older one")
            continue
        if path != state.model_checkpoint_path and chief:  # newer damaged ones leave the index
            keep = listed[:listed.index(path) + 1] if path in listed else [path]
            tf.compat.v1.train.update_checkpoint_state(ckpt_dir, path, all_model_checkpoint_paths=keep)
        return path
    raise UserError(f"{ckpt_dir}: no readable checkpoint ({'; '.join(errors)}){hint}; or use a new --model_dir")


def save(gan, manager, step: int, chief: bool) -> None:
    if not finite_weights(gan):
        raise TrainingDiverged(f"non-finite weights (or optimizer state) at step {step}: training stopped, not saved; "
                               f"the last good checkpoint {manager.latest_checkpoint or '(none)'} is untouched "
                               "(lower the learning rates?)")
    if manager.latest_checkpoint and manager.latest_checkpoint.endswith(f"-{step}"):
        return
    try:
        manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as e:  # e.g. a full disk: ENOSPC, ResourceExhaustedError
        shutil.rmtree(os.path.join(manager.directory, f"ckpt-{step}_temp"), ignore_errors=True)
        reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", (str(e).strip() or type(e).__name__).splitlines()[0])
        raise UserError(f"{manager.directory}: cannot write the checkpoint of step {step} ({reason}); if no space "
                        f"is left on the device, free some and run the same command to resume from the intact "
                        f"{manager.latest_checkpoint or '(no checkpoint yet)'}") from None
