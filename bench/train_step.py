#!/usr/bin/env python3
"""Train-step benchmark: images/s of every scheme, float32 against mixed_bfloat16, and the FLOP/s
achieved as a fraction of a matmul and a conv peak measured in the same run.

    python bench/train_step.py [--quick] [--schemes=dcgan,lapgan,mod] [--resolutions=64,128,256]
                               [--precisions=float32,mixed_bfloat16] [--batch_size=16] [--peer]

Networks: the widths of configs/<scheme>.cfg (the paper-size settings). The configs are written for
256 px with a 32 px pyramid base; at 64 and 128 px the pyramid schemes keep that 32 px base and use
log2(R/32)+1 levels (DCGAN: 1024 filters at 4x4, halved per doubling, at least 32, at every size).
The augmentation and loss of the config are kept (DiffAugment, non-saturating). One device, one
fixed in-memory batch (no input pipeline), global batch 16.

Peaks: ``matmul`` = a 2048x2048x2048 tf.linalg.matmul (2 n^3 FLOP), ``conv`` = a 3x3 'same' Conv2D
layer on a (16, 64, 64, 128) input with 128 filters (2 * N*H*W * 9 * Cin * Cout FLOP), both in the
precision of the row (bfloat16 rows against bfloat16 peaks), both compiled as tf.functions.

The machine is shared and its load changes by the minute, so the peaks are measured again right
before each scheme/resolution pair (1 s each) and the fractions of a row use those adjacent
peaks; the peaks at the start and the end of the run are printed for reference.

FLOPs of a train step are counted on the traced step's graph (the concrete function that runs):
2 * MACs of every Conv2D, Conv2DBackpropInput (gradients and transposed convolutions),
Conv2DBackpropFilter and MatMul op, from their static shapes. Element-wise work (BatchNorm,
activations, augmentation, Adam) is not counted. tf.compat.v1.profiler's float_operation total on
the same graph is printed beside it as a cross-check (it adds a few element-wise ops, ~1%).

``--peer`` (optional torch): after every dcgan row, the same networks and step in PyTorch
(bench/torch_peer.py) at the same resolution, batch and precision, in this process; the table gains
the columns peer img/s and ours/peer. The peer does no augmentation and keeps no EMA generator
(``--augment=none`` removes the first difference).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


# --------------------------------------------------------------------------- configuration
def read_cfg(scheme: str) -> dict:
    """--key=value lines of configs/<scheme>.cfg as a dict of strings."""
    out = {}
    with open(os.path.join(REPO, "configs", f"{scheme}.cfg"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("--") and "=" in line:
                k, v = line[2:].split("=", 1)
                out[k] = v
    return out


def train_config(scheme: str, resolution: int, precision: str, batch: int, augment: str | None):
    from melano_tf import config as cfg
    c = read_cfg(scheme)
    kw = dict(scheme=scheme, latent_dim=int(c.get("latent_dim", 128)), base_filters=int(c["base_filters"]),
              min_filters=int(c.get("min_filters", 32)), loss=c.get("loss", "nonsaturating"),
              augment=augment or c.get("augment", "diffaugment"), batch_size=batch, precision=precision,
              strategy="one_device", model_dir="/tmp/unused")
    if scheme != "dcgan":
        base = int(c.get("base_resolution", 32))
        if resolution < 2 * base:
            base = resolution // 2
        levels = int(round(math.log2(resolution // base))) + 1
        kw.update(level_filters=int(c["level_filters"]), level_blocks=int(c["level_blocks"]),
                  base_resolution=base, num_levels=levels, pyramid_mode=c.get("pyramid_mode", "binomial"))
        if scheme == "mod":
            kw.update(level_weights=(1.0,) * levels, condition_on=c.get("condition_on", "generated"))
    conf = cfg.TrainConfig(data=cfg.DataConfig(resolution=resolution), **kw)
    conf.validate()
    return conf


# --------------------------------------------------------------------------- FLOPs from the graph
def _shape(t):
    s = t.shape
    return None if s.rank is None or any(d is None for d in s.as_list()) else s.as_list()


def op_flops(op) -> int | None:
    """2 * MACs of a conv / matmul op from static shapes; None if a shape is unknown; 0 for others."""
    t = op.type
    if t == "Conv2D":        # input NHWC, filter [kh, kw, cin, cout], output NHWC
        f, o = _shape(op.inputs[1]), _shape(op.outputs[0])
        return None if f is None or o is None else 2 * int(np.prod(o)) * f[0] * f[1] * f[2]
    if t in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):   # same MACs as the forward convolution
        grad_out = _shape(op.inputs[2])            # out_backprop [N, Ho, Wo, cout]
        f = _shape(op.inputs[1]) if t == "Conv2DBackpropInput" else _shape(op.outputs[0])
        return None if f is None or grad_out is None else 2 * int(np.prod(grad_out)) * f[0] * f[1] * f[2]
    if t in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a, o = _shape(op.inputs[0]), _shape(op.outputs[0])
        if a is None or o is None:
            return None
        ta = op.get_attr("transpose_a") if t == "MatMul" else op.get_attr("adj_x")
        k = a[-2] if ta else a[-1]
        return 2 * int(np.prod(o)) * k
    return 0


def graph_flops(graph, seen=None) -> tuple[int, int, dict]:
    """(FLOPs, ops with unknown shapes, FLOPs per op type) of a graph and the functions it calls."""
    seen = set() if seen is None else seen
    total, unknown, by_type = 0, 0, {}
    for op in graph.get_operations():
        f = op_flops(op)
        if f is None:
            unknown += 1
        elif f:
            total += f
            by_type[op.type] = by_type.get(op.type, 0) + f
        if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            name = op.get_attr("f").name
            fn = graph._functions.get(name) if hasattr(graph, "_functions") else None  # noqa: SLF001
            inner = getattr(fn, "graph", None)
            if inner is not None and name not in seen:
                seen.add(name)
                t, u, b = graph_flops(inner, seen)
                total, unknown = total + t, unknown + u
                for k, v in b.items():
                    by_type[k] = by_type.get(k, 0) + v
    return total, unknown, by_type


def profiler_flops(graph) -> int:
    import tensorflow as tf
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops)


# --------------------------------------------------------------------------- timing
def timed(fn, min_iters: int, min_seconds: float) -> float:
    """Seconds per call of ``fn`` (after a warm-up call), at least min_iters calls and min_seconds."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def peaks(dtype: str, quick: bool) -> dict:
    """GFLOP/s of a 2048^2 matmul and a 3x3 conv layer in ``dtype``."""
    import tensorflow as tf
    dt = tf.as_dtype(dtype)
    n = 2048
    a = tf.cast(tf.random.stateless_normal([n, n], [1, 2]), dt)
    b = tf.cast(tf.random.stateless_normal([n, n], [3, 4]), dt)
    reps = 10

    @tf.function
    def mm():
        acc = tf.zeros([], tf.float32)
        for _ in range(reps):
            acc += tf.cast(tf.linalg.matmul(a + tf.cast(acc, dt), b)[0, 0], tf.float32)
        return acc

    x = tf.cast(tf.random.stateless_normal([16, 64, 64, 128], [5, 6]), dt)
    w = tf.cast(tf.random.stateless_normal([3, 3, 128, 128], [7, 8]) * 0.03, dt)

    @tf.function
    def conv():
        acc = tf.zeros([], tf.float32)
        for _ in range(reps):
            acc += tf.cast(tf.nn.conv2d(x + tf.cast(acc, dt), w, 1, "SAME")[0, 0, 0, 0], tf.float32)
        return acc

    secs = 1.0 if quick else 3.0
    t_mm = timed(lambda: float(mm()), 2, secs)
    t_conv = timed(lambda: float(conv()), 2, secs)
    return {"matmul": reps * 2 * n ** 3 / t_mm / 1e9,
            "conv": reps * 2 * 16 * 64 * 64 * 9 * 128 * 128 / t_conv / 1e9}


def bench_step(scheme, resolution, precision, batch, quick, augment):
    import keras
    import tensorflow as tf
    from melano_tf.train import loop, runtime
    conf = train_config(scheme, resolution, precision, batch, augment)
    runtime.set_precision(precision)
    strategy = runtime.make_strategy("one_device")
    keras.utils.set_random_seed(0)
    gan = loop.build_gan(conf, strategy, 0)
    step = loop.make_step_fn(gan, strategy)
    x = tf.tanh(tf.random.stateless_normal([batch, resolution, resolution, 3], [9, 9]))
    data = (x, tf.zeros([batch], tf.int32))
    t0 = time.perf_counter()
    float(step(data)["d_loss"])            # trace + first step
    trace_s = time.perf_counter() - t0
    graph = step.get_concrete_function(data).graph
    flops, unknown, by_type = graph_flops(graph)
    prof = profiler_flops(graph)
    sec = timed(lambda: float(step(data)["d_loss"]), 1 if quick else 3, 2.0 if quick else 8.0)
    g_params = sum(int(np.prod(v.shape)) for v in gan.g_variables)
    d_params = sum(int(np.prod(v.shape)) for v in gan.d_variables)
    keras.mixed_precision.set_global_policy("float32")
    return {"img_s": batch / sec, "step_s": sec, "flops": flops, "unknown": unknown, "by_type": by_type,
            "profiler": prof, "trace_s": trace_s, "params": g_params + d_params, "g_params": g_params,
            "d_params": d_params, "levels": gan.level_resolutions}


def load_peer():
    """bench/torch_peer.py, or None (after one line on how to install torch) when torch is missing."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import torch_peer
    if torch_peer.import_torch() is None:
        print(f"# --peer: {torch_peer.INSTALL_HINT}; the peer columns are left out", flush=True)
        return None
    return torch_peer


def bench_peer(peer, ours: dict, resolution, precision, batch, quick, augment) -> dict | None:
    """The peer's row for our dcgan row ``ours``; None (with a line saying why) when it cannot run."""
    conf = train_config("dcgan", resolution, precision, batch, augment)
    try:
        res = peer.run(resolution, batch, precision, conf.latent_dim, conf.base_filters, conf.min_filters,
                       conf.g_upsample, quick=quick)
    except ValueError as e:
        print(f"  peer   {resolution:4d} px {precision:15s} skipped: {e}", flush=True)
        return None
    same = (res["g_params"], res["d_params"]) == (ours["g_params"], ours["d_params"])
    print(f"  peer   {resolution:4d} px {precision:15s} {res['img_s']:8.2f} img/s  ours/peer "
          f"{ours['img_s'] / res['img_s']:.2f}x  params G/D: ours {ours['g_params']:,} / {ours['d_params']:,}, "
          f"peer {res['g_params']:,} / {res['d_params']:,} ({'equal' if same else 'DIFFERENT'})  "
          f"torch {res['torch']} on {res['device']}", flush=True)
    return res


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peer_cells(row) -> str:
    """' peer img/s | ours/peer |' of a table row (blank without a peer measurement)."""
    p = row.get("peer")
    return f" {p['img_s']:.2f} | {row['img_s'] / p['img_s']:.2f}x |" if p else "  |  |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer timed iterations")
    p.add_argument("--schemes", default="dcgan,lapgan,mod")
    p.add_argument("--resolutions", default="64,128,256")
    p.add_argument("--precisions", default="float32,mixed_bfloat16",
                   help="any of float32, mixed_bfloat16, mixed_float16 (GPU)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--augment", default=None, help="override the configs' augmentation (none|diffaugment|ada)")
    p.add_argument("--peer", action="store_true", help="also time the PyTorch peer after every dcgan row (torch)")
    a = p.parse_args()
    schemes = [s for s in a.schemes.split(",") if s]
    resolutions = [int(r) for r in a.resolutions.split(",") if r]
    precisions = [q for q in a.precisions.split(",") if q]

    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    peer = load_peer() if a.peer else None
    if peer is not None:
        for g in gpus:   # leave GPU memory to torch in this process
            tf.config.experimental.set_memory_growth(g, True)
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    device = f"GPU: {', '.join(names)}" if gpus else f"CPU: {cpu_name()}, {os.cpu_count()} cores"
    print(f"# {device}; TensorFlow {tf.__version__}; batch {a.batch_size}; "
          f"{'quick' if a.quick else 'full'} timing", flush=True)

    peak = {}
    for q in precisions:
        dtype = DTYPES[q]
        peak[q] = peaks(dtype, a.quick)
        print(f"# peak {dtype:8s}: matmul 2048^2 {peak[q]['matmul']:7.1f} GFLOP/s   "
              f"conv2d 3x3 (16x64x64x128 -> 128) {peak[q]['conv']:7.1f} GFLOP/s", flush=True)

    rows = []
    t_rows = time.time()
    for scheme in schemes:
        for r in resolutions:
            near = {q: peaks(DTYPES[q], True) for q in set(precisions) | {"float32"}}
            print("# adjacent peaks: " + "; ".join(f"{DTYPES[q]} matmul {v['matmul']:.0f} conv {v['conv']:.0f}"
                                                    for q, v in near.items()) + " GFLOP/s", flush=True)
            for q in precisions:
                res = bench_step(scheme, r, q, a.batch_size, a.quick, a.augment)
                gflops = res["flops"] / res["step_s"] / 1e9
                row = dict(scheme=scheme, res=r, precision=q, **res, gflops=gflops,
                           of_matmul=gflops / near[q]["matmul"], of_conv=gflops / near[q]["conv"],
                           of_conv_fp32=gflops / near["float32"]["conv"], peaks=near)
                rows.append(row)
                print(f"  {scheme:6s} {r:4d} px {q:15s} {res['img_s']:8.2f} img/s  "
                      f"{res['flops'] / 1e9 / a.batch_size:7.2f} GFLOP/img  {gflops:7.1f} GFLOP/s  "
                      f"levels {res['levels']}  params {res['params'] / 1e6:.1f}M  "
                      f"trace {res['trace_s']:.1f}s  unknown-shape ops {res['unknown']}  "
                      f"profiler {res['profiler'] / 1e9 / a.batch_size:.2f} GFLOP/img",
                      flush=True)
                if peer is not None and scheme == "dcgan":
                    row["peer"] = bench_peer(peer, res, r, q, a.batch_size, a.quick, a.augment)

    for q in precisions:   # again at the end, for reference
        again = peaks(DTYPES[q], a.quick)
        print(f"# peak {DTYPES[q]:8s} at the end: matmul {again['matmul']:7.1f}  conv {again['conv']:7.1f} GFLOP/s "
              f"(train steps took {time.time() - t_rows:.0f} s)", flush=True)
        peak[q] = {k: max(v, again[k]) for k, v in peak[q].items()}

    print()
    print("| scheme | px | precision | img/s | GFLOP/img (step) | GFLOP/s | adjacent peaks matmul / conv "
          "(same precision) | % matmul peak | % conv peak | % fp32 conv peak | speed vs fp32 |"
          + (" peer img/s | ours/peer |" if peer is not None else ""))
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if peer is not None else ""))
    base = {(x["scheme"], x["res"]): x for x in rows if x["precision"] == "float32"}
    for x in rows:
        ratio = ""
        if x["precision"] != "float32" and (x["scheme"], x["res"]) in base:
            ratio = f"{x['img_s'] / base[(x['scheme'], x['res'])]['img_s']:.2f}x"
        print(f"| {x['scheme']} | {x['res']} | {x['precision']} | {x['img_s']:.2f} | "
              f"{x['flops'] / 1e9 / a.batch_size:.2f} | {x['gflops']:.1f} | "
              f"{x['peaks'][x['precision']]['matmul']:.0f} / {x['peaks'][x['precision']]['conv']:.0f} | "
              f"{100 * x['of_matmul']:.0f}% | "
              f"{100 * x['of_conv']:.0f}% | {100 * x['of_conv_fp32']:.0f}% | {ratio} |"
              + (peer_cells(x) if peer is not None else ""))
    print()
    for q in precisions:
        print(f"peak {q} (best of start/end of run): matmul {peak[q]['matmul']:.1f} GFLOP/s, "
              f"conv {peak[q]['conv']:.1f} GFLOP/s")
    if ("dcgan", 256) in base:
        d = base[("dcgan", 256)]
        print(f"target DCGAN-256 float32 >= 50% of the float32 conv peak: {100 * d['of_conv']:.0f}% of the adjacent "
              f"peak, {100 * d['gflops'] / peak['float32']['conv']:.0f}% of the best start/end peak -> "
              f"{'met' if d['of_conv'] >= 0.5 else 'NOT met'}")
    for q, goal, only in (("mixed_bfloat16", 1.3, None), ("mixed_float16", 2.0, 256)):
        ratios = [x["img_s"] / base[(x["scheme"], x["res"])]["img_s"] for x in rows
                  if x["precision"] == q and (x["scheme"], x["res"]) in base and only in (None, x["res"])]
        if ratios:
            print(f"target {q} >= {goal}x float32{f' at {only} px' if only else ''}: "
                  f"{', '.join(f'{r:.2f}x' for r in ratios)} -> met in {sum(r >= goal for r in ratios)}/{len(ratios)}")


if __name__ == "__main__":
    main()
