"""Precision policy and tf.distribute strategy from the config (``auto`` resolved on the device)."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from melano_tf.errors import UserError


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 (AVX512_BF16 or AMX): there bf16 measured faster."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return " avx512_bf16" in text or " amx_bf16" in text


def resolve_precision(precision: str) -> str:
    """``auto``: mixed_float16 on GPUs, mixed_bfloat16 on CPUs with bf16 units, else float32."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bf16() else "float32"


def set_precision(precision: str) -> str:
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def make_strategy(name: str) -> tf.distribute.Strategy:
    """one_device: first GPU or the CPU; mirrored: all local GPUs (or all logical CPUs);
    multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG; auto: multi_worker when TF_CONFIG
    names several workers, mirrored with several GPUs, else one_device."""
    # MultiWorkerMirroredStrategy must exist before anything initialises TF's context.
    if name == "auto":
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
        if len(tf_config.get("cluster", {}).get("worker", [])) + len(tf_config.get("cluster", {}).get("chief", [])) > 1:
            name = "multi_worker"
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise UserError("--strategy=multi_worker needs the TF_CONFIG environment variable (see README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        # On CPU the logical devices share the cores; the default cross-device ops pick NCCL /
        # collective all-reduce, which is built for GPUs, so the gradients are summed on one device.
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    raise UserError(f"--strategy={name}: unknown")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def check_batch(global_batch: int, strategy: tf.distribute.Strategy) -> int:
    n = strategy.num_replicas_in_sync
    if global_batch % n:
        raise UserError(f"--batch_size={global_batch}: not divisible by the {n} replicas")
    return global_batch // n
