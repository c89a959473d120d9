#!/usr/bin/env python3
"""Where a train step spends its time: a TensorFlow profiler trace of a few steps, top ops by time.

    python bench/profile_step.py [--schemes=dcgan,mod] [--resolution=256] [--precisions=float32,mixed_bfloat16]
                                 [--batch_size=16] [--steps=3] [--top=15] [--logdir=bench_out/profile]

Networks and step as ``bench/train_step.py`` (the paper-size configs, one device, a fixed
in-memory batch). After two untraced warm-up steps, ``--steps`` steps run under
``tf.profiler.experimental`` (host tracer); the trace (``LOGDIR/plugins/profile/*/*.xplane.pb``,
viewable in TensorBoard's profile tab) is read back here: every TensorFlow op execution on the host
plane is summed by op type (``Conv2DBackpropFilter``, ``Cast``, ``FusedBatchNormV3``, ...), as
self time, then grouped into the families issue 11 asks about (convolutions and their backprop,
casts, BatchNorm, element-wise, DiffAugment's ops, optimizer updates). Op executions on the
inter-op threads overlap, so percentages are of the summed op time, not of wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as ts  # noqa: E402  (bench/train_step.py: configs, the step's set-up)

#: op type -> family (everything else: "other").
FAMILIES = {
    "conv forward": ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D"),
    "conv backprop (input, transposed conv)": ("Conv2DBackpropInput",),
    "conv backprop (filter)": ("Conv2DBackpropFilter",),
    "matmul": ("MatMul", "BatchMatMulV2", "_FusedMatMul"),
    "casts": ("Cast",),
    "BatchNorm": ("FusedBatchNormV3", "FusedBatchNormGradV3", "FusedBatchNorm", "FusedBatchNormGrad"),
    "resize / pad / slice / transpose": ("ResizeBilinear", "ResizeBilinearGrad", "ResizeNearestNeighbor",
                                         "ResizeNearestNeighborGrad", "Pad", "PadV2", "MirrorPad",
                                         "MirrorPadGrad", "Slice", "StridedSlice", "StridedSliceGrad",
                                         "Transpose", "ConcatV2", "Tile", "GatherV2", "ScatterNd",
                                         "TensorScatterUpdate", "ImageProjectiveTransformV3"),
    "random (noise, DiffAugment draws)": ("StatelessRandomNormalV2", "StatelessRandomUniformV2",
                                          "StatelessRandomUniformIntV2", "StatelessRandomGetKeyCounter"),
    "optimizer (Adam, EMA)": ("ResourceApplyAdam", "AssignVariableOp", "AssignAddVariableOp",
                              "AssignSubVariableOp", "ReadVariableOp"),
}
ELEMENTWISE = ("Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "Relu", "ReluGrad", "LeakyRelu",
               "LeakyReluGrad", "Tanh", "TanhGrad", "Sigmoid", "Softplus", "Square", "Sqrt", "Rsqrt",
               "Exp", "Log", "Neg", "Select", "SelectV2", "Mean", "Sum", "BiasAdd", "BiasAddGrad",
               "SquaredDifference", "AddN", "Sign", "Greater", "Less", "GreaterEqual", "LessEqual",
               "ClipByValue", "Abs", "Pow", "Reciprocal", "Floor", "ZerosLike", "OnesLike", "Fill",
               "BroadcastTo", "Reshape", "Pack", "Unpack", "Identity")
FAMILIES["element-wise / reductions"] = ELEMENTWISE


#: Events that span other ops (function calls), left out of the sums.
FRAMES = ("Run", "PartitionedCall", "StatefulPartitionedCall", "While", "If", "StatelessIf", "StatelessWhile")


def family(op_type: str) -> str:
    for name, types in FAMILIES.items():
        if op_type in types:
            return name
    return "other"


def trace(scheme, resolution, precision, batch, steps, logdir):
    """Run warm-up and ``steps`` traced steps; returns (trace folder, seconds per traced step)."""
    import keras
    import tensorflow as tf

    from melano_tf.train import loop, runtime
    conf = ts.train_config(scheme, resolution, precision, batch, None)
    runtime.set_precision(precision)
    strategy = runtime.make_strategy("one_device")
    gan = loop.build_gan(conf, strategy, 0)
    step = loop.make_step_fn(gan, strategy)
    x = tf.tanh(tf.random.stateless_normal([batch, resolution, resolution, 3], [9, 9]))
    data = (x, tf.zeros([batch], tf.int32))
    for _ in range(2):
        float(step(data)["d_loss"])
    out = os.path.join(logdir, f"{scheme}_{resolution}_{precision}")
    tf.profiler.experimental.start(out, options=tf.profiler.experimental.ProfilerOptions(
        host_tracer_level=2, python_tracer_level=0, device_tracer_level=1))
    t0 = time.perf_counter()
    for _ in range(steps):
        float(step(data)["d_loss"])
    sec = (time.perf_counter() - t0) / steps
    tf.profiler.experimental.stop()
    keras.mixed_precision.set_global_policy("float32")
    return out, sec


def op_times(folder: str) -> dict:
    """op type -> summed duration (s) of the TF op events in the newest xplane.pb under ``folder``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    paths = sorted(glob.glob(os.path.join(folder, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise SystemExit(f"no trace under {folder}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            for ev in line.events:
                name = names.get(ev.metadata_id, "")
                # TF op events are named "scope/op_name:OpType"; executor / function frames are not ops
                if ":" not in name:
                    continue
                op_type = name.rsplit(":", 1)[1].strip()
                if op_type.startswith("__") or op_type in FRAMES or name.startswith("ExecutorState"):   # frames
                    continue
                totals[op_type] += ev.duration_ps * 1e-12
    return totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schemes", default="dcgan,mod")
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--precisions", default="float32,mixed_bfloat16")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--logdir", default="bench_out/profile")
    a = p.parse_args()
    for scheme in a.schemes.split(","):
        for precision in a.precisions.split(","):
            folder, sec = trace(scheme, a.resolution, precision, a.batch_size, a.steps, a.logdir)
            totals = op_times(folder)
            total = sum(totals.values()) or 1.0
            fam = collections.Counter()
            for op, t in totals.items():
                fam[family(op)] += t
            print(f"\n### {scheme} {a.resolution} px, {precision}, batch {a.batch_size}: {sec:.2f} s/step "
                  f"({a.batch_size / sec:.1f} img/s), op time summed over {a.steps} steps {total:.1f} s\n")
            print("| family | share of op time |\n|---|---:|")
            for name, t in fam.most_common():
                print(f"| {name} | {100 * t / total:.1f}% |")
            print(f"\n| op type (top {a.top}) | family | share | s/step |\n|---|---|---:|---:|")
            for op, t in totals.most_common(a.top):
                print(f"| {op} | {family(op)} | {100 * t / total:.1f}% | {t / a.steps:.3f} |")
            print(f"\ntrace: {folder}", flush=True)


if __name__ == "__main__":
    main()
