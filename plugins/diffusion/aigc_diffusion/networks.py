"""Denoising networks, chosen by the data's shape: ``net(z, logsnr, y) -> prediction`` (eps or v,
same shape as ``z``). The log-SNR enters through sinusoidal features and an MLP (the time
embedding of DDPM); a class label adds a learned embedding, with one extra "no label" entry
(index ``num_classes``) for classifier-free guidance. Points: an MLP of residual blocks;
images: a small U-Net of residual conv blocks with group norm (Ho et al. 2020, without
attention at these sizes)."""
from __future__ import annotations

import math

import torch
from torch import nn


class TimeLabelEmbedding(nn.Module):
    """``emb(logsnr, y)``: sinusoidal features of ``logsnr / 4`` through a 2-layer MLP, plus a
    label embedding (``y = num_classes`` is the unconditional entry)."""

    def __init__(self, dim: int, num_classes: int, frequencies: int = 32):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000.0), frequencies)), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, logsnr: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        arg = (logsnr.float() / 4)[:, None] * self.freqs[None] / 10
        e = self.mlp(torch.cat([arg.sin(), arg.cos()], 1))
        if self.label is not None:
            e = e + self.label(y)
        return e


class FourierFeatures(nn.Module):
    """``[z, sin(pi 2^k z), cos(pi 2^k z)]`` for ``k < n`` per coordinate (NeRF's positional
    encoding, Tancik et al. 2020): an MLP on raw coordinates is too smooth for sharp modes."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n, dtype=torch.float32), persistent=False)

    def width(self, dim: int) -> int:
        return dim * (1 + 2 * len(self.freqs))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        arg = (z[..., None] * self.freqs).flatten(1)
        return torch.cat([z, arg.sin(), arg.cos()], 1)


class PointNet(nn.Module):
    """For points ``N x D``: the coordinates' Fourier features (``fourier`` frequencies; 0: the
    coordinates alone), ``Linear(., width)``, ``depth`` residual blocks ``h + W2 silu(W1 LN(h) +
    emb)``, then ``Linear(width, D)`` (zero-initialised: the first prediction is 0)."""

    def __init__(self, dim: int, num_classes: int, width: int, depth: int, fourier: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.embed = TimeLabelEmbedding(width, num_classes)
        self.features = FourierFeatures(fourier) if fourier else nn.Identity()
        self.inp = nn.Linear(self.features.width(dim) if fourier else dim, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.lin1 = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.lin2 = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, z: torch.Tensor, logsnr: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(logsnr, y)
        h = self.inp(self.features(z))
        for norm, l1, l2 in zip(self.norms, self.lin1, self.lin2):
            h = h + l2(nn.functional.silu(l1(norm(h)) + e))
        return self.out(h)


def _groups(c: int) -> int:
    return math.gcd(8, c)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.e = nn.Linear(emb, c_out)
        self.n2, self.c2 = nn.GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.c1(nn.functional.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        return self.skip(x) + self.c2(nn.functional.silu(self.n2(h)))


class UNet(nn.Module):
    """For images ``C x H x W`` (square, side a power of two >= 8): one residual block per
    resolution from ``H`` down to 4 x 4 (channels ``channels * (1, 2, 2, ...)``, strided-conv
    downsampling), one in the middle, and one per resolution back up on the concatenated skip
    (nearest upsampling + conv); zero-initialised output conv."""

    def __init__(self, shape: tuple[int, ...], num_classes: int, channels: int, emb: int | None = None):
        super().__init__()
        c, h, _ = shape
        self.num_classes = num_classes
        levels = int(round(math.log2(h / 4))) + 1
        widths = [channels * (1 if i == 0 else 2) for i in range(levels)]
        emb = emb or 4 * channels
        self.embed = TimeLabelEmbedding(emb, num_classes)
        self.inp = nn.Conv2d(c, channels, 3, padding=1)
        self.down, self.pool = nn.ModuleList(), nn.ModuleList()
        prev = channels
        for i, w in enumerate(widths):
            self.down.append(ResBlock(prev, w, emb))
            self.pool.append(nn.Conv2d(w, w, 3, stride=2, padding=1) if i < levels - 1 else nn.Identity())
            prev = w
        self.mid = ResBlock(prev, prev, emb)
        self.up, self.unpool = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels)):
            w = widths[i]
            self.up.append(ResBlock(prev + w, w, emb))
            self.unpool.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, widths[i - 1], 3, padding=1))
                               if i > 0 else nn.Identity())
            prev = widths[i - 1] if i > 0 else w
        self.out = nn.Sequential(nn.GroupNorm(_groups(prev), prev), nn.SiLU(), nn.Conv2d(prev, c, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, z: torch.Tensor, logsnr: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(logsnr, y)
        h = self.inp(z)
        skips = []
        for block, pool in zip(self.down, self.pool):
            h = block(h, e)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, e)
        for block, unpool in zip(self.up, self.unpool):
            h = unpool(block(torch.cat([h, skips.pop()], 1), e))
        return self.out(h)


def check_image_shape(shape: tuple[int, ...]) -> str | None:
    """Why the U-Net cannot take images of ``shape`` (C x H x W), or None."""
    _, h, w = shape
    if h != w or h < 8 or 2 ** round(math.log2(h)) != h:
        return (f"the diffusion U-Net takes square images of side 8, 16, 32, 64, ..., got {h} x {w}: "
                "resize them (image folders: --set dataset.size=32)")
    return None
