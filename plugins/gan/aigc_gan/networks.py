"""Generators and discriminators, chosen by the data's shape: MLPs for points ``N x D``, DCGAN-style
conv nets for images ``N x C x H x W``. Conditional nets take int64 labels: the generator embeds
the label into its input, the discriminator is a projection discriminator (Miyato & Koyama 2018):
``D(x, y) = w^T phi(x) + b + <embed(y), phi(x)>``."""
from __future__ import annotations

import math

import torch
from torch import nn


class Generator(nn.Module):
    """``G(z, y)``: an MLP (points) or DCGAN upsampling stack (images) from ``z ~ N(0, I)``."""

    def __init__(self, z_dim: int, out_shape: tuple[int, ...], num_classes: int, width: int, depth: int,
                 channels: int, batch_norm: bool):
        super().__init__()
        self.z_dim, self.out_shape, self.num_classes = z_dim, tuple(out_shape), num_classes
        self.embed = nn.Embedding(num_classes, z_dim) if num_classes else None
        in_dim = z_dim * (2 if num_classes else 1)
        if len(out_shape) == 1:
            layers: list[nn.Module] = []
            for i in range(depth):
                layers += [nn.Linear(in_dim if i == 0 else width, width)]
                layers += [nn.BatchNorm1d(width)] if batch_norm else []
                layers += [nn.ReLU()]
            layers += [nn.Linear(width if depth else in_dim, out_shape[0])]
            self.net = nn.Sequential(*layers)
            self.head = None
        else:
            c_out, h, _ = out_shape
            ups = int(round(math.log2(h / 4)))
            base = channels * 2 ** ups
            self.head = nn.Sequential(nn.Linear(in_dim, base * 16), nn.Unflatten(1, (base, 4, 4)),
                                      *([nn.BatchNorm2d(base)] if batch_norm else []), nn.ReLU())
            layers = []
            c = base
            for _ in range(ups):
                layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(c // 2)] if batch_norm else []
                layers += [nn.ReLU()]
                c //= 2
            layers += [nn.Conv2d(c, c_out, 3, 1, 1), nn.Tanh()]
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
    (images)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, width: int, depth: int, channels: int,
                 pack: int = 1):
        super().__init__()
        self.in_shape, self.pack = tuple(in_shape), pack
        if len(in_shape) == 1:
            layers: list[nn.Module] = []
            d = in_shape[0] * pack
            for i in range(depth):
                layers += [nn.Linear(d if i == 0 else width, width), nn.LeakyReLU(0.2)]
            self.features = nn.Sequential(*layers)
            feat = width if depth else d
        else:
            c_in, h, _ = in_shape
            downs = int(round(math.log2(h / 4)))
            layers = [nn.Conv2d(c_in * pack, channels, 3, 1, 1), nn.LeakyReLU(0.2)]
            c = channels
            for _ in range(downs):
                layers += [nn.Conv2d(c, c * 2, 4, 2, 1), nn.LeakyReLU(0.2)]
                c *= 2
            layers += [nn.Flatten()]
            self.features = nn.Sequential(*layers)
            feat = c * 16
        self.out = nn.Linear(feat, 1)
        self.embed = nn.Embedding(num_classes, feat) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.pack > 1:
            n = x.shape[0] // self.pack
            x = x[:n * self.pack].reshape(n, self.pack * x.shape[1], *x.shape[2:])
        h = self.features(x)
        logits = self.out(h).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(y) * h).sum(1)
        return logits


def check_image_shape(shape: tuple[int, ...]) -> str | None:
    """Why the conv nets cannot take images of ``shape`` (C x H x W), or None."""
    c, h, w = shape
    if h != w or h < 4 or 2 ** round(math.log2(h / 4)) * 4 != h:
        return (f"the GAN's conv nets take square images of side 4 * 2^k (8, 16, 32, 64, ...), got {h} x {w}: "
                "resize them (image folders: --set dataset.size=32)")
    if c not in (1, 3):
        return f"the GAN's conv nets take 1 or 3 channels, got {c}"
    return None
