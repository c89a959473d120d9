#!/usr/bin/env python3
"""PyTorch peer of melano_tf's DCGAN: images/s of the same networks and train step in the framework a
user would pick instead. torch is optional; without it this prints how to install it and exits 1.

    python bench/torch_peer.py [--resolution=256] [--batch_size=16] [--precision=float32]
                               [--upsample=transpose] [--device=auto] [--quick]

Networks: melano_tf.gan.networks.dcgan_generator / dcgan_discriminator layer by layer (NCHW here,
NHWC there; the same parameters), at the widths of configs/dcgan.cfg by default:

  G: Linear(latent -> 4*4*F_4, no bias) -> BN -> ReLU; per doubling ConvTranspose(F_r, 4, stride 2,
     no bias) ('transpose') or nearest x2 + Conv(F_r, 3, no bias) ('resize') -> BN -> ReLU;
     Conv(3, 3) + bias -> tanh.
  D: per halving Conv(F_r, 4, stride 2) + bias -> LeakyReLU(0.2); flatten; Linear(1).
  F_r = max(min_filters, base_filters * 4 / r); BN momentum 0.9 (Keras' sense), epsilon 1e-5;
  weights N(0, 0.02), biases 0.

Step: D step (softplus(-D(x)) + softplus(D(G(z)))) then G step (softplus(-D(G(z')))), Adam
(2e-4, betas 0.5 / 0.999, the TrainConfig defaults), batch means. Not here (melano_tf's step does
them): DiffAugment (``bench/train_step.py --augment=none`` turns it off there), the EMA generator and
its BN-statistics pass, minibatch stddev, class conditioning, R1.

Precision: ``float32``; ``mixed_bfloat16``: bfloat16 autocast (CPU or CUDA); ``mixed_float16``:
float16 autocast with a GradScaler per optimizer (CUDA only). G's to_rgb conv and D's logit layer run
in float32, as melano_tf's do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time

INSTALL_HINT = ("PyTorch is not installed (it is optional); for the peer: "
                "pip install torch --index-url https://download.pytorch.org/whl/cpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def import_torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def filters(resolution: int, base_filters: int = 1024, min_filters: int = 32, width: float = 1.0) -> list[int]:
    """Filters at 4, 8, ..., resolution px (melano_tf's dcgan_filters)."""
    n = int(math.log2(resolution))
    if resolution < 4 or 2 ** n != resolution:
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    base = max(1, round(base_filters * width))
    low = max(1, round(min_filters * width))
    return [max(low, base // 2 ** i) for i in range(n - 1)]


def build(resolution: int, latent_dim: int = 128, base_filters: int = 1024, min_filters: int = 32,
          width: float = 1.0, upsample: str = "transpose"):
    """(generator, discriminator) as torch modules, initialised like melano_tf's."""
    import torch
    from torch import nn

    fs = filters(resolution, base_filters, min_filters, width)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)   # Keras momentum 0.9 = torch 0.1

    def doubling(cin, cout):
        if upsample == "transpose":
            return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)]
        if upsample == "resize":
            return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
        raise ValueError(f"upsample={upsample!r}: choose one of transpose, resize")

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(latent_dim, 4 * 4 * fs[0], bias=False)
            layers = [bn(fs[0]), nn.ReLU()]
            for cin, cout in zip(fs, fs[1:]):
                layers += [*doubling(cin, cout), bn(cout), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            self.to_rgb = nn.Conv2d(fs[-1], 3, 3, padding=1)

        def forward(self, z):
            h = self.body(self.project(z).view(-1, fs[0], 4, 4))
            with torch.autocast(h.device.type, enabled=False):   # float32 ending
                return torch.tanh(self.to_rgb(h.float()))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            layers, cin = [], 3
            for cout in reversed(fs[:-1]):
                layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
                cin = cout
            self.body = nn.Sequential(*layers)
            self.logits = nn.Linear(4 * 4 * cin, 1)

        def forward(self, x):
            h = self.body(x).flatten(1)
            with torch.autocast(h.device.type, enabled=False):   # float32 logits
                return self.logits(h.float())

    g, d = Generator(), Discriminator()
    for m in (*g.modules(), *d.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return g, d


def num_params(module) -> int:
    """Trainable parameters (BN statistics are buffers, as they are non-trainable in Keras)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def run(resolution: int, batch_size: int = 16, precision: str = "float32", latent_dim: int = 128,
        base_filters: int = 1024, min_filters: int = 32, upsample: str = "transpose", device: str = "auto",
        quick: bool = False, min_seconds: float | None = None, seed: int = 0) -> dict:
    """Time train steps; {'img_s', 'step_s', 'g_params', 'd_params', 'device', 'torch', ...}."""
    import torch
    import torch.nn.functional as F

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if precision == "mixed_float16" and dev.type != "cuda":
        raise ValueError("mixed_float16: float16 autocast is benchmarked on CUDA only")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True   # TF autotunes its convolutions too
    torch.manual_seed(seed)
    g, d = build(resolution, latent_dim, base_filters, min_filters, upsample=upsample)
    g, d = g.to(dev).train(), d.to(dev).train()
    g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    fp16 = precision == "mixed_float16"
    scalers = [torch.amp.GradScaler(dev.type, enabled=fp16) for _ in range(2)]
    cast = {"float32": None, "mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}[precision]

    def autocast():
        return torch.autocast(dev.type, dtype=cast) if cast is not None else contextlib.nullcontext()

    real = torch.tanh(torch.randn(batch_size, 3, resolution, resolution, device=dev))

    def update(opt, scaler, loss):
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def step():
        with autocast():
            with torch.no_grad():
                fake = g(torch.randn(batch_size, latent_dim, device=dev))
            d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        update(d_opt, scalers[0], d_loss)
        d.requires_grad_(False)   # G's step needs D's input gradients, not its weight gradients
        with autocast():
            g_loss = F.softplus(-d(g(torch.randn(batch_size, latent_dim, device=dev)))).mean()
        update(g_opt, scalers[1], g_loss)
        d.requires_grad_(True)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()
    step()   # cudnn autotuning / allocator warm-up
    warmup_s = time.perf_counter() - t0
    budget = min_seconds if min_seconds is not None else (2.0 if quick else 8.0)
    n, t0 = 0, time.perf_counter()
    while n < (1 if quick else 3) or time.perf_counter() - t0 < budget:
        step()
        n += 1
    sec = (time.perf_counter() - t0) / n
    return {"peer": "pytorch", "torch": torch.__version__, "device": str(dev), "resolution": resolution,
            "batch_size": batch_size, "precision": precision, "upsample": upsample, "img_s": batch_size / sec,
            "step_s": sec, "steps": n, "warmup_s": warmup_s, "g_params": num_params(g), "d_params": num_params(d)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--precision", default="float32", choices=PRECISIONS)
    p.add_argument("--latent_dim", type=int, default=128)
    p.add_argument("--base_filters", type=int, default=1024)
    p.add_argument("--min_filters", type=int, default=32)
    p.add_argument("--upsample", default="transpose", choices=("transpose", "resize"))
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--quick", action="store_true", help="fewer timed iterations")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a sentence")
    a = p.parse_args()
    if import_torch() is None:
        print(f"torch_peer: {INSTALL_HINT}", file=sys.stderr)
        return 1
    try:
        r = run(a.resolution, a.batch_size, a.precision, a.latent_dim, a.base_filters, a.min_filters,
                a.upsample, a.device, a.quick)
    except ValueError as e:
        print(f"torch_peer: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r))
    else:
        print(f"torch_peer: dcgan {r['resolution']} px {r['precision']} batch {r['batch_size']} on {r['device']} "
              f"(torch {r['torch']}): {r['img_s']:.2f} img/s; params G {r['g_params']:,} D {r['d_params']:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
