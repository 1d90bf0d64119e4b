"""The CVAE's networks: p(x, z | c) = p(x | z, c) p(z | c) with an encoder q(z | x, c).

- Prior ``p(z | c) = N(mu_z(c), diag sigma_z(c)^2)``: learned per class (an embedding of c),
  one learned Gaussian when unconditional, or N(0, I) (``prior="standard"``).
- Decoder ``p(x | z, c)``: per dimension a location and a log-scale (the likelihood in
  ``likelihoods``; on a table, per block: logits of a categorical or a Bernoulli), from an
  MLP on ``[z, embed(c)]`` (or a small transposed-conv net for images).
- Encoder ``q(z | x, c) = N(mu(x, c), diag sigma(x, c)^2)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import likelihoods


def mlp(d_in: int, d_out: int, width: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(d_in if i == 0 else width, width), nn.ReLU()]
    layers += [nn.Linear(width if depth else d_in, d_out)]
    return nn.Sequential(*layers)


class CVAENet(nn.Module):
    def __init__(self, shape: tuple[int, ...], latent_dim: int, num_classes: int, width: int, depth: int,
                 embed_dim: int, prior: str, arch: str, decoder: str, levels: int, blocks: list | None = None):
        super().__init__()
        self.shape, self.latent_dim, self.num_classes, self.arch = tuple(shape), latent_dim, num_classes, arch
        self.decoder_kind, self.levels, self.blocks = decoder, levels, list(blocks or [])
        self.dim = math.prod(shape)
        e = embed_dim if num_classes else 0
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.learned_prior = prior == "learned"
        if self.learned_prior:  # per class (or one row when unconditional)
            self.prior_mu = nn.Embedding(max(1, num_classes), latent_dim)
            self.prior_log_sigma = nn.Embedding(max(1, num_classes), latent_dim)
            nn.init.normal_(self.prior_mu.weight, std=0.1)
            nn.init.zeros_(self.prior_log_sigma.weight)
        if arch == "conv":
            c, h, w = shape
            self.enc_conv = nn.Sequential(nn.Conv2d(c, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                          nn.Flatten())
            enc_in = 64 * (h // 2) * (w // 2)
            self.encoder = mlp(enc_in + e, 2 * latent_dim, width, max(1, depth - 1))
            self.dec_fc = nn.Sequential(mlp(latent_dim + e, 64 * (h // 2) * (w // 2), width, max(1, depth - 1)),
                                        nn.ReLU(), nn.Unflatten(1, (64, h // 2, w // 2)))
            self.dec_conv = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 2 * c, 3, 1, 1))
        else:
            self.encoder = mlp(self.dim + e, 2 * latent_dim, width, depth)
            self.decoder = mlp(latent_dim + e, 2 * self.dim, width, depth)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator | None = None,
                samples: int = 0, noise: torch.Tensor | None = None):
        """Per row: the reconstruction term log p(x | z, c) at one z ~ q(z | x, c) and the KL
        divergence KL(q(z | x, c) || p(z | c)) per latent dimension (their difference is the ELBO).
        With ``samples = k >= 1``: ``[N, k]`` reconstruction terms and log p(z | c) - log q(z | x, c)
        at k draws z ~ q (their sum is the log importance weight of the IWAE bound). ``noise``: the
        standard normal draws of z (``[N, latent]``, or ``[N, k, latent]``) instead of new ones."""
        mu_q, ls_q = self.encode(x, y)
        if samples:
            n, k = len(x), samples
            eps = noise if noise is not None else torch.randn(n, k, mu_q.shape[1], device=x.device, generator=generator)
            z = mu_q[:, None] + torch.exp(ls_q)[:, None] * eps
            zf = z.reshape(n * k, -1)
            yf = y.repeat_interleave(k) if y is not None else None
            mu_x, ls_x = self.decode(zf, yf)
            rec = self.log_likelihood(x.repeat_interleave(k, 0), mu_x, ls_x)
            mu_p, ls_p = self.prior(yf, n * k, x.device)
            log_ratio = (gaussian_log_density(zf, mu_p, ls_p).reshape(n, k)
                         - gaussian_log_density(z, mu_q[:, None], ls_q[:, None]))
            return rec.reshape(n, k), log_ratio
        eps = noise if noise is not None else torch.randn(mu_q.shape, device=x.device, generator=generator)
        z = mu_q + torch.exp(ls_q) * eps
        mu_x, ls_x = self.decode(z, y)
        rec = self.log_likelihood(x, mu_x, ls_x)
        mu_p, ls_p = self.prior(y, len(x), x.device)
        return rec, gaussian_kl(mu_q, ls_q, mu_p, ls_p)

    def log_likelihood(self, x: torch.Tensor, mu_x: torch.Tensor, ls_x: torch.Tensor) -> torch.Tensor:
        """log p(x | z, c) per row: the decoder kind's likelihood, per block on a table."""
        if self.decoder_kind == "table":
            return likelihoods.table(x, mu_x, ls_x, self.blocks)
        return likelihoods.log_likelihood(self.decoder_kind, x, mu_x, ls_x, self.levels)

    def _cond(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return torch.cat([h, self.embed(y)], 1) if self.embed is not None else h

    def encode(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std of q(z | x, c)."""
        h = self.enc_conv(x) if self.arch == "conv" else x.flatten(1)
        mu, log_sigma = self.encoder(self._cond(h, y)).chunk(2, 1)
        return mu, log_sigma

    def decode(self, z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and log-scale of p(x | z, c), shaped like x."""
        h = self._cond(z, y)
        if self.arch == "conv":
            out = self.dec_conv(self.dec_fc(h))
            c = self.shape[0]
            return out[:, :c], out[:, c:]
        mu, log_scale = self.decoder(h).chunk(2, 1)
        return mu.reshape(-1, *self.shape), log_scale.reshape(-1, *self.shape)

    def prior(self, y: torch.Tensor | None, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log std of p(z | c), ``[n, latent_dim]``."""
        if not self.learned_prior:
            zero = torch.zeros(n, self.latent_dim, device=device)
            return zero, zero
        idx = y if y is not None else torch.zeros(n, dtype=torch.int64, device=device)
        return self.prior_mu(idx), self.prior_log_sigma(idx)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """log N(z | mu, diag exp(log_sigma)^2), summed over the last dimension."""
    u = (z - mu) * torch.exp(-log_sigma)
    return (-0.5 * u * u - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)


def gaussian_kl(mu_q, log_sigma_q, mu_p, log_sigma_p) -> torch.Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) per dimension (diagonal Gaussians)."""
    return (log_sigma_p - log_sigma_q
            + (torch.exp(2 * log_sigma_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * log_sigma_p)) - 0.5)
