"""Generators and discriminators, chosen by the data's shape: MLPs for points ``N x D``, DCGAN-style
conv nets for images ``N x C x H x W``. Conditional nets take int64 labels: the generator embeds
the label into its input, the discriminator is a projection discriminator (Miyato & Koyama 2018):
``D(x, y) = w^T phi(x) + b + <embed(y), phi(x)>``."""
from __future__ import annotations

import math

import torch
from torch import nn


def _norm1d(kind: str, n: int) -> list[nn.Module]:
    return {"batch": [nn.BatchNorm1d(n)], "layer": [nn.LayerNorm(n)], "none": []}[kind]


def start_size(side: int) -> int:
    """The side the conv stacks start from (generator) and end at (discriminator): 2 for 8x8
    images, 4 beyond (DCGAN)."""
    return 2 if side <= 8 else 4


class Generator(nn.Module):
    """``G(z, y)``: an MLP (points) or a DCGAN upsampling stack (images) from ``z ~ N(0, I)``.

    Images: ``[z, embed(y)] -> Linear -> (channels * 2^u) x s x s -> u transposed convs 4/2/1
    (halving the channels, the last to the image's) -> tanh``, with ``s = start_size(H)``,
    ``u = log2(H / s)``; batch norm after each layer but the last when ``norm = "batch"``."""

    def __init__(self, z_dim: int, out_shape: tuple[int, ...], num_classes: int, width: int, depth: int,
                 channels: int, norm: str, embed_dim: int = 0):
        super().__init__()
        self.z_dim, self.out_shape, self.num_classes = z_dim, tuple(out_shape), num_classes
        e = (embed_dim or z_dim) if num_classes else 0
        self.embed = nn.Embedding(num_classes, e) if num_classes else None
        in_dim = z_dim + e
        if len(out_shape) == 1:
            layers: list[nn.Module] = []
            for i in range(depth):
                layers += [nn.Linear(in_dim if i == 0 else width, width), *_norm1d(norm, width), nn.ReLU()]
            layers += [nn.Linear(width if depth else in_dim, out_shape[0])]
            self.net = nn.Sequential(*layers)
            self.head = None
        else:
            c_out, h, _ = out_shape
            s0 = start_size(h)
            ups = int(round(math.log2(h / s0)))
            c = channels * 2 ** ups
            bn = norm == "batch"
            self.head = nn.Sequential(nn.Linear(in_dim, c * s0 * s0), *([nn.BatchNorm1d(c * s0 * s0)] if bn else []),
                                      nn.ReLU(), nn.Unflatten(1, (c, s0, s0)))
            layers = []
            for i in range(ups):
                last = i == ups - 1
                layers += [nn.ConvTranspose2d(c, c_out if last else c // 2, 4, 2, 1)]
                layers += [nn.Tanh()] if last else [*([nn.BatchNorm2d(c // 2)] if bn else []), nn.ReLU()]
                c //= 2
            self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        if self.head is not None:
            z = self.head(z)
        return self.net(z)


class Discriminator(nn.Module):
    """``D(x, y)``: logits ``[N]``. With ``pack = m`` it judges ``N / m`` groups of ``m`` samples
    (PacGAN): the samples of a group are concatenated along features (points) or channels
    (images). Points: an MLP (``depth`` x ``width``, LeakyReLU(0.2)); with ``fourier = m`` its
    input is ``[x, sin(2 pi B x), cos(2 pi B x)]`` for a fixed random ``B`` (``D x m`` entries
    ``N(0, fourier_scale^2)``, Tancik et al. 2020), so that it resolves structure finer than
    the smooth functions an MLP of ``x`` learns first (the modes of a grid of Gaussians against
    the bridges between them). Images: strided convs 4/2/1 (doubling the channels) down to
    ``start_size(H)``, one 3x3 conv, then the features ``phi(x)``; LeakyReLU(0.2) throughout, no
    normalisation."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int, depth: int, channels: int,
                 pack: int = 1, fourier: int = 0, fourier_scale: float = 1.0):
        super().__init__()
        self.in_shape, self.pack = tuple(in_shape), pack
        self.register_buffer("fourier", None)
        if len(in_shape) == 1:
            layers: list[nn.Module] = []
            d = in_shape[0] * pack
            if fourier:
                self.register_buffer("fourier", torch.randn(d, fourier) * fourier_scale)
                d += 2 * fourier
            for i in range(depth):
                layers += [nn.Linear(d if i == 0 else width, width), nn.LeakyReLU(0.2)]
            self.features = nn.Sequential(*layers)
            feat = width if depth else d
        else:
            c_in, h, _ = in_shape
            s0 = start_size(h)
            downs = int(round(math.log2(h / s0)))
            layers = []
            c_prev, c = c_in * pack, channels
            for _ in range(downs):
                layers += [nn.Conv2d(c_prev, c, 4, 2, 1), nn.LeakyReLU(0.2)]
                c_prev, c = c, c * 2
            layers += [nn.Conv2d(c_prev, c, 3, 1, 1), nn.LeakyReLU(0.2), nn.Flatten()]
            self.features = nn.Sequential(*layers)
            feat = c * s0 * s0
        self.out = nn.Linear(feat, 1)
        self.embed = nn.Embedding(num_classes, feat) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.pack > 1:
            n = x.shape[0] // self.pack
            x = x[:n * self.pack].reshape(n, self.pack * x.shape[1], *x.shape[2:])
        if self.fourier is not None:
            proj = 2 * math.pi * x @ self.fourier
            x = torch.cat([x, proj.sin(), proj.cos()], 1)
        h = self.features(x)
        logits = self.out(h).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(y) * h).sum(1)
        return logits


def check_image_shape(shape: tuple[int, ...]) -> str | None:
    """Why the conv nets cannot take images of ``shape`` (C x H x W), or None."""
    c, h, w = shape
    if h != w or h < 8 or 2 ** round(math.log2(h / 4)) * 4 != h:
        return (f"the GAN's conv nets take square images of side 8, 16, 32, 64, ..., got {h} x {w}: "
                "resize them (image folders: --set dataset.size=32)")
    if c not in (1, 3):
        return f"the GAN's conv nets take 1 or 3 channels, got {c}"
    return None
