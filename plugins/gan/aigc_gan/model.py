"""The ``gan`` model: a generator and a discriminator trained on the fused GAN losses through the
core's step loop; unconditional, or conditional when the dataset's labels are classes."""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch

from aigc_engine import (EMA, InputError, Model, Run, class_frequencies, conditional_classes, fabric, metrics, neural,
                         ops, sample_labels)
from aigc_engine.config import data_kind, option, resolve_defaults
from aigc_engine.privacy import DPSGD, PrivacyBudget, budget_of, reported

from aigc_engine.tables import layout_from_json, layout_to_json, table_outputs

from .networks import Discriminator, Generator, check_image_shape

# Defaults that depend on the kind of data (points N x D, images N x C x H x W, or tables: encoded
# rows with known blocks): a Config field left at None takes the value for the data's kind
# (resolved at fit, saved with the model). On tables batch_size is at most the row count and
# steps scale with it (see GAN.resolve); pack is 1, so conditioning on the label just works.
TABLE_STEPS = 6000  # the most default steps on a table; fewer on small ones (config.fit_to_table)
TABLE_EPOCHS = 250  # passes over a small table's rows in a default run
TABLE_MIN_STEPS = 400  # the fewest default steps on a table: 1000 memorise a few hundred rows...
STEPS_PER_COLUMN = 30  # ...but a wide one needs them: at least 30 per column (900 on breast_cancer's 30)

DEFAULTS = {
    "points": dict(steps=24000, batch_size=256, z_dim=2, width=128, depth=3, channels=32, r1_gamma=0.01, pack=2,
                   ema_decay=0.999, augment=False, norm="layer", lr_decay_from=0.5, fourier=128, fourier_scale=0.25),
    "images": dict(steps=1500, batch_size=64, z_dim=32, width=0, depth=0, channels=32, r1_gamma=1.0, pack=1,
                   ema_decay=0.999, augment=False, norm="batch", lr_decay_from=1.0, fourier=0, fourier_scale=1.0),
    "tables": dict(steps=TABLE_STEPS, batch_size=256, z_dim=32, width=256, depth=2, channels=32, r1_gamma=0.1,
                   pack=1, ema_decay=0.995, augment=False, norm="layer", lr_decay_from=0.5, fourier=0,
                   fourier_scale=1.0),
}


@dataclasses.dataclass
class GANConfig:
    """Hyper-parameters of the ``gan`` model; None means the default for the data's kind (points or
    images, see ``aigc_gan.model.DEFAULTS``)."""
    steps: int | None = option(None, help="training steps", ge=1)
    batch_size: int | None = option(None, help="rows per step", ge=1)
    lr: float = option(2e-4, help="Adam learning rate of both networks", gt=0)
    betas: tuple[float, float] = option((0.5, 0.999), help="Adam betas", ge=0, lt=1)
    loss: Literal["ns", "hinge", "lsgan", "wgan"] = option("ns", help="GAN loss; ns: non-saturating BCE")
    n_critic: int = option(1, help="discriminator steps per generator step", ge=1)
    r1_gamma: float | None = option(None, help="R1 penalty weight on real data; 0: off", ge=0)
    gp_weight: float = option(10.0, help="gradient penalty weight of loss=wgan", ge=0)
    ema_decay: float | None = option(None, help="decay of the generator's EMA", ge=0, le=1)
    pack: int | None = option(None, help="PacGAN packing: samples the discriminator sees together", ge=1)
    augment: bool | None = option(None, help="random translations of images for D, DiffAugment")
    z_dim: int | None = option(None, help="latent dimensions", ge=1)
    width: int | None = option(None, help="hidden units of the MLPs, for points", ge=0)
    fourier: int | None = option(None, help="random Fourier features of x in D, for points; 0: off", ge=0)
    fourier_scale: float | None = option(None, help="frequency scale of the Fourier features", ge=0)
    depth: int | None = option(None, help="hidden layers of the MLPs, for points", ge=0)
    channels: int | None = option(None, help="base channels of the conv nets, for images", ge=1)
    norm: Literal["none", "batch", "layer"] | None = option(None, help="normalisation in G")
    embed_dim: int = option(32, help="label embedding size of a conditional model", ge=1)
    lr_decay_from: float | None = option(None, help="fraction of steps after which lr decays linearly to 0",
                                         ge=0, le=1)
    standardize: bool = option(True, help="train points on x / std, samples scaled back")
    conditional: Literal["auto", "true", "false"] = option("auto", help="condition on class labels")
    tau: float = option(0.2, help="Gumbel-softmax temperature of a table's one-hot blocks", gt=0)
    truncation: float = option(0.0, help="truncation trick: redraw z beyond +-this when sampling; 0: off", ge=0)
    amp: bool = option(True, help="mixed precision on CUDA")
    log_every: int = option(50, help="steps per logged row", ge=1)
    checkpoint_every: int = option(1000, help="steps per checkpoint", ge=1)
    snapshots: int = option(8, help="sample snapshots over training, for progress.png", ge=0)
    privacy_clip: float = option(1.0, help="a private run's bound on each row's gradient of D (DP-SGD)", gt=0)
    privacy_accountant: Literal["rdp", "prv"] = option("rdp", help="a private run's accountant (opacus')")


def translate(x: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Differentiable augmentation (DiffAugment's translation, Zhao et al. 2020): each image moved
    by up to ``shift`` pixels in each direction, the border filled with -1 (black)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (shift,) * 4, value=-1.0).permute(0, 2, 3, 1)
    dy = torch.randint(0, 2 * shift + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(0, 2 * shift + 1, (n, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] + dy
    cols = torch.arange(w, device=x.device)[None, None, :] + dx
    return padded[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def _optimizers(netG, netD, c: GANConfig):
    """Adam for each network and their learning-rate schedules: constant, then linear to 0 at the
    last step from ``lr_decay_from`` of the steps."""
    optG = torch.optim.Adam(netG.parameters(), lr=c.lr, betas=c.betas, fused=True)
    optD = torch.optim.Adam(netD.parameters(), lr=c.lr, betas=c.betas, fused=True)
    decay_at = c.lr_decay_from * c.steps

    def lr_factor(i: int) -> float:
        return 1.0 if i < decay_at or c.lr_decay_from >= 1 else max(0.0, (c.steps - i) / (c.steps - decay_at))
    return optG, optD, torch.optim.lr_scheduler.LambdaLR(optG, lr_factor), torch.optim.lr_scheduler.LambdaLR(optD, lr_factor)


class GAN(Model):
    """Generative adversarial network (BCE, Adam 2e-4 (0.5, 0.999), D step then G step; R1 and an
    EMA of G; MLPs for points and tables, DCGAN conv nets for images; conditional on class labels).
    On a table G's outputs go through a Gumbel-softmax per one-hot block and per missing
    indicator (``aigc_engine.tables.table_outputs``); samples are encoded rows with exact one-hots."""

    name = "gan"
    Config = GANConfig
    default_dataset = "ring8"
    defaults_by_kind = DEFAULTS
    supports_privacy = True  # run.privacy: DP-SGD on the discriminator (docs/privacy.md)

    def __init__(self, config: GANConfig | None = None):
        super().__init__(config)
        self.privacy: dict[str, Any] = {}  # what a private fit spent (summary.json)
        self.netG: Generator | None = None
        self.ema: EMA | None = None
        self.num_classes = 0
        self.class_freq: torch.Tensor | None = None
        self.resolved: GANConfig | None = None
        self.snapshots: dict[str, Any] = {}
        self.data_shape: tuple[int, ...] = ()
        self.scale = 1.0
        self.blocks: list = []  # a table's typed blocks (aigc_engine.tables.Block); empty for other data

    # -- construction --------------------------------------------------------------------------
    def _conditional(self, dataset) -> int:
        return conditional_classes(dataset, self.config.conditional)

    def _build(self, shape: tuple[int, ...], num_classes: int, c: GANConfig) -> tuple[Generator, Discriminator]:
        if len(shape) == 3:
            why = check_image_shape(shape)
            if why:
                raise InputError(why)
        elif len(shape) != 1:
            raise InputError(f"the GAN takes points N x D or images N x C x H x W, got rows of shape {list(shape)}")
        if len(shape) == 3 and c.fourier:
            raise InputError("fourier (random Fourier features of x in D) is for points, not images: leave it unset")
        if c.pack > 1 and num_classes:
            raise InputError("pack > 1 (PacGAN) is for unconditional models: set conditional=false or pack=1")
        netG = Generator(c.z_dim, shape, num_classes, c.width, c.depth, c.channels, c.norm, c.embed_dim)
        netD = Discriminator(shape, num_classes, c.width, c.depth, c.channels, c.pack,
                             c.fourier, c.fourier_scale)
        return netG, netD

    def resolve(self, dataset) -> GANConfig:
        """The config for this data: fields left at None take the defaults of its kind (``pack`` 1
        when classes condition the model); on a table the default batch is at most its rows and
        the default steps ``TABLE_EPOCHS`` passes over them (at least ``TABLE_MIN_STEPS`` and
        ``STEPS_PER_COLUMN`` per column, at most ``TABLE_STEPS``)."""
        columns = len(getattr(getattr(dataset, "encoding", None), "blocks", ()))
        c = resolve_defaults(self.config, DEFAULTS, dataset, table_epochs=TABLE_EPOCHS,
                             table_min_steps=max(TABLE_MIN_STEPS, STEPS_PER_COLUMN * columns))
        if self.config.pack is None and self._conditional(dataset):  # PacGAN packs unconditional samples only
            c = dataclasses.replace(c, pack=1)
        return c

    def validate(self, dataset) -> None:
        """Everything that can be checked before training (the engine calls it before it makes
        a run directory): the config for this data's kind, the networks for its shape, the batch."""
        c = self.resolve(dataset)
        self._build(tuple(dataset.shape[1:]), self._conditional(dataset), c)
        if c.batch_size > len(dataset):
            raise InputError(f"batch_size={c.batch_size} is more than the {len(dataset)} rows of dataset {dataset.name!r}")
        if c.batch_size % c.pack:
            raise InputError(f"batch_size={c.batch_size} must be a multiple of pack={c.pack}")

    def validate_privacy(self, dataset, budget) -> None:
        """What a private fit refuses (R1, packing, wgan, augmentation set by the user), before
        the engine makes a run directory."""
        _private_config(self.config, self.resolve(dataset))

    # -- training ------------------------------------------------------------------------------
    def fit(self, dataset, run: Run) -> None:
        self.validate(dataset)
        c = self.resolved = self.resolve(dataset)
        budget = budget_of(run)
        if budget is not None:
            return self._fit_private(dataset, run, budget)
        netD = self._setup(dataset, run)
        netG, netD = run.wrap(self.netG), run.wrap(netD)
        optG, optD, schedG, schedD = _optimizers(netG, netD, c)
        batches = run.batches(dataset, c.batch_size, drop_last=True)
        fixed_z = torch.randn(64 if dataset.is_image else 512, c.z_dim, generator=torch.Generator().manual_seed(run.seed)).to(run.device)
        fixed_y = self._fixed_labels(len(fixed_z), run.device)
        self.snapshots = neural.new_snapshots()
        loop = run.loop(c.steps, {"netG": netG, "netD": netD, "optG": optG, "optD": optD, "schedG": schedG,
                                  "schedD": schedD, "ema": self.ema, "data": batches, "snapshots": self.snapshots},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every, desc="GAN")
        augment = translate if (c.augment and dataset.is_image) else (lambda t: t)
        for step in loop:
            for critic in range(c.n_critic):  # discriminator step(s)
                fake, y, d_real, d_fake, loss_d, penalty = self._critic_step(
                    netG, netD, optD, next(batches), run, augment, last=critic == c.n_critic - 1)
            # generator step on the same fake against the updated D: gradients for G only; D's are
            # neither computed nor all-reduced
            with run.autocast(c.amp):
                loss_g = ops.gan_g_loss(netD(augment(fake), y).float(), c.loss)
            optG.zero_grad(set_to_none=True)
            with fabric.no_sync(netD):
                loss_g.backward(inputs=list(netG.parameters()))
            optG.step()
            schedG.step()
            schedD.step()
            self.ema.update(netG)
            loop.log(loss_d=loss_d, loss_g=loss_g, r1=penalty, **self._d_outputs(d_real, d_fake, c.loss))
            if neural.snapshot_due(step, c.steps, c.snapshots):  # the last step even with snapshots=0
                neural.take_snapshot(self.snapshots, step, self.ema.module, lambda: self._outputs(
                    self.ema.module(fixed_z, fixed_y).float(), hard=True).cpu() * self.scale)
        self._recompute_batch_norm(c.batch_size, run.device, run.seed)
        self.netG.eval()
        self.ema.module.eval()

    # -- the private fit (docs/privacy.md) ------------------------------------------------------
    def _fit_private(self, dataset, run: Run, budget: PrivacyBudget) -> None:
        """DP-SGD (``aigc_engine.privacy.DPSGD``, on opacus) on the discriminator alone, the one
        network that reads the training rows: each D step is a Poisson sample of the rows, each row
        paired with one fake (its per-sample gradient is the row's loss's plus its fake's, clipped
        together), the clipped sum noised. The generator's steps read only the D those steps
        released and fresh noise: post-processing, they spend nothing (the DP-GAN argument, Xie
        et al. 2018). The class rates G is sampled with are noisy counts in the same budget;
        points are trained in their own scale (their std is not read)."""
        if run.world_size > 1:
            raise InputError("a private fit runs on one process (DP-SGD here is not distributed)")
        c = self.resolved = _private_config(self.config, self.resolved)
        netD = self._setup(dataset, run).to(run.device)
        self.scale = 1.0
        dp = DPSGD(budget, len(dataset), c.batch_size, c.steps * c.n_critic, max_grad_norm=c.privacy_clip,
                   accountant=c.privacy_accountant, counts=bool(self.num_classes), device=run.device)
        if self.num_classes:
            self.class_freq = dp.class_frequencies(dataset.y, self.num_classes)
        optG, optD, schedG, schedD = _optimizers(self.netG, netD, c)
        netD, optD = dp.make_private(netD, optD)
        data = (dataset.x.to(run.device), dataset.y.to(run.device) if self.num_classes else None)
        fixed_z = torch.randn(512, c.z_dim, generator=torch.Generator().manual_seed(run.seed)).to(run.device)
        fixed_y = self._fixed_labels(len(fixed_z), run.device)
        self.snapshots = neural.new_snapshots()
        loop = run.loop(c.steps, {"netG": self.netG, "netD": netD, "optG": optG, "optD": optD, "schedG": schedG,
                                  "schedD": schedD, "ema": self.ema, "snapshots": self.snapshots, "privacy": dp},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every, desc="GAN (DP-SGD)")
        for step in loop:
            for _ in range(c.n_critic):
                loss_d = self._private_critic_step(netD, optD, dp, data, run)
            loss_g = self._private_generator_step(netD, optG, run)
            schedG.step()
            schedD.step()
            self.ema.update(self.netG)
            loop.log(loss_d=loss_d, loss_g=loss_g)
            if neural.snapshot_due(step, c.steps, c.snapshots):
                neural.take_snapshot(self.snapshots, step, self.ema.module, lambda: self._outputs(
                    self.ema.module(fixed_z, fixed_y).float(), hard=True).cpu())
        dp.close()
        self.privacy = dp.spent()
        self._recompute_batch_norm(c.batch_size, run.device, run.seed)
        self.netG.eval()
        self.ema.module.eval()

    def _private_critic_step(self, netD, optD, dp: DPSGD, data, run: Run) -> torch.Tensor:
        """One private D step on a Poisson sample of the rows (an empty one: the noise alone)."""
        c = self.resolved
        rows = dp.batch().to(run.device)
        if not len(rows):
            dp.noise_step(netD, optD)
            return torch.zeros((), device=run.device)
        x, y = data[0][rows], data[1][rows] if data[1] is not None else None
        with torch.no_grad():
            fake = self._outputs(self.netG(run.randn(len(rows), c.z_dim), y).float(), hard=False)
        loss_d = ops.gan_d_loss(netD(x, y).float(), netD(fake, y).float(), c.loss)
        optD.zero_grad(set_to_none=True)
        loss_d.backward()
        optD.step()
        return loss_d.detach()

    def _private_generator_step(self, netD, optG, run: Run) -> torch.Tensor:
        """One G step on a fresh fake batch of the expected size against the released D (its
        per-sample hooks off: nothing of D is trained here)."""
        c = self.resolved
        y = torch.multinomial(self.class_freq.float(), c.batch_size, replacement=True).to(run.device) \
            if self.num_classes else None
        fake = self._outputs(self.netG(run.randn(c.batch_size, c.z_dim), y).float(), hard=False)
        netD.disable_hooks()
        try:
            loss_g = ops.gan_g_loss(netD(fake, y).float(), c.loss)
            optG.zero_grad(set_to_none=True)
            loss_g.backward(inputs=list(self.netG.parameters()))
        finally:
            netD.enable_hooks()
        optG.step()
        return loss_g.detach()

    def _setup(self, dataset, run: Run) -> Discriminator:
        """What training needs of the data (its shape, classes, blocks and scale), the generator
        on the run's device with its EMA, and the discriminator (returned)."""
        c = self.resolved
        self.data_shape = tuple(dataset.shape[1:])
        self.num_classes = self._conditional(dataset)
        if c.batch_size % (c.pack * run.world_size):
            raise InputError(f"batch_size={c.batch_size} must be a multiple of pack={c.pack} times the "
                             f"{run.world_size} processes")
        self.class_freq = class_frequencies(dataset, self.num_classes)
        # points are trained on x / scale (one scalar for all coordinates: the mixture's geometry
        # is kept), samples are scaled back; a table's encoding standardised each column already
        self.blocks = list(dataset.encoding.blocks) if data_kind(dataset) == "tables" else []
        self.scale = neural.data_scale(dataset.x, c.standardize and not dataset.is_image and not self.blocks)
        self.netG, netD = self._build(self.data_shape, self.num_classes, c)
        self.netG.to(run.device)
        self.ema = EMA(self.netG, c.ema_decay, warmup=True)
        return netD

    def _critic_step(self, netG, netD, optD, batch, run: Run, augment, last: bool):
        """One discriminator step on ``batch``; the fake of the ``last`` one keeps its graph (the
        G step reuses it, as the DCGAN tutorial does, instead of running G again). Returns the
        fake, its labels, D's outputs, its loss and the penalty."""
        c = self.resolved
        x, y = batch
        x = neural.scaled(x, self.scale)
        y = y if self.num_classes else None
        z = run.randn(c.batch_size, c.z_dim)  # this process's rows of the global batch's noise
        with torch.set_grad_enabled(last), run.autocast(c.amp):
            fake = self._outputs(netG(z, y).float(), hard=False)
        x = x.requires_grad_(c.r1_gamma > 0)
        with run.autocast(c.amp):
            d_real, d_fake = netD(augment(x), y), netD(augment(fake.detach()), y)
            loss_d = ops.gan_d_loss(d_real.float(), d_fake.float(), c.loss)
        penalty = torch.zeros((), device=run.device)
        if c.r1_gamma > 0:  # R1: gamma/2 E||grad_x D(x)||^2 on real data (Mescheder 2018)
            grad, = torch.autograd.grad(d_real.float().sum(), x, create_graph=True)
            penalty = penalty + c.r1_gamma / 2 * grad.pow(2).flatten(1).sum(1).mean()
        if c.loss == "wgan":
            eps = run.rand(c.batch_size, *([1] * (x.dim() - 1)))  # this process's rows, as z
            penalty = penalty + c.gp_weight * gradient_penalty(netD, x.detach(), fake, y, eps)
        optD.zero_grad(set_to_none=True)
        (loss_d + penalty).backward()
        optD.step()
        return fake, y, d_real, d_fake, loss_d, penalty

    def _outputs(self, raw: torch.Tensor, hard: bool) -> torch.Tensor:
        """The generator's output as data: per block of a table (the core's ``table_outputs``:
        relaxed in training, drawn exactly when ``hard``), else as is."""
        if not self.blocks:
            return raw
        return table_outputs(raw, self.blocks, "sample" if hard else "relaxed", tau=self.resolved.tau)

    @torch.no_grad()
    def _recompute_batch_norm(self, batch: int, device, seed: int, batches: int = 20) -> None:
        """Batch-norm statistics of the EMA generator estimated under its own (averaged) weights,
        as ``torch.optim.swa_utils.update_bn`` does, from random (z, y) of a private generator."""
        g = self.ema.module
        norms = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        gen = torch.Generator().manual_seed(seed + 123)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches
        g.train()
        for _ in range(batches):
            z = torch.randn(batch, self.resolved.z_dim, generator=gen).to(device)
            y = torch.multinomial(self.class_freq.float(), batch, replacement=True, generator=gen).to(device) \
                if self.num_classes else None
            g(z, y)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        g.eval()

    @staticmethod
    def _d_outputs(d_real: torch.Tensor, d_fake: torch.Tensor, loss: str) -> dict[str, torch.Tensor]:
        """What D says of real and generated data: probabilities for ns, raw scores otherwise."""
        d_real, d_fake = d_real.detach().float(), d_fake.detach().float()
        if loss == "ns":
            return {"D(x)": torch.sigmoid(d_real).mean(), "D(G(z))": torch.sigmoid(d_fake).mean()}
        return {"D(x)": d_real.mean(), "D(G(z))": d_fake.mean()}

    def _fixed_labels(self, n: int, device) -> torch.Tensor | None:
        if not self.num_classes:
            return None
        return (torch.arange(n) % self.num_classes).to(device)

    # -- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples from the EMA generator; ``condition``: labels ``[n]`` (conditional models;
        without it labels are drawn from the training frequencies)."""
        neural.fitted(self.ema, "gan")
        neural.check_count(n)
        c = self.resolved
        device = next(self.ema.module.parameters()).device
        y = sample_labels(n, condition, self.num_classes, self.class_freq, "gan")
        y = y.to(device) if y is not None else None
        z = torch.randn(n, c.z_dim)
        if c.truncation > 0:  # the truncation trick: redraw entries beyond +-truncation
            while (bad := z.abs() > c.truncation).any():
                z[bad] = torch.randn(int(bad.sum()))
        self.ema.module.eval()
        with torch.no_grad():
            # tables: exact one-hots and 0/1 indicators, in the encoded space the encoding decodes
            return self._outputs(self.ema.module(z.to(device), y).float(), hard=True).cpu() * self.scale

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        """Mode coverage (datasets with known modes: 2500 samples); for labelled images the judge's
        metrics of class-conditional samples; a private fit's spend (``privacy_epsilon``, ...)."""
        return {**metrics.sample_metrics(self, dataset, run.device), **reported(self.privacy)}

    def figures(self, dataset) -> dict[str, Any]:
        """``progress.png``: samples from one fixed z over training."""
        if self.blocks:  # a table's encoded columns are no picture
            return {}
        return neural.progress_figure(self.snapshots, f"gan on {dataset.name}: samples from a fixed z",
                                      None if dataset.is_image else dataset.x)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        neural.fitted(self.ema, "gan")
        return {"config": dataclasses.asdict(self.resolved), "data_shape": list(self.data_shape), "scale": self.scale,
                "blocks": layout_to_json(self.blocks),
                "num_classes": self.num_classes, "class_freq": self.class_freq,
                "ema": self.ema.module.state_dict(), "snapshots": self.snapshots,
                **({"privacy": self.privacy} if self.privacy else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with neural.reading_state("gan"):
            cfg = dict(state["config"])
            cfg["betas"] = tuple(cfg["betas"])
            self.resolved = GANConfig(**cfg)
            self.data_shape = tuple(state["data_shape"])
            self.num_classes = int(state["num_classes"])
            self.class_freq = state.get("class_freq")
            self.scale = float(state.get("scale", 1.0))
            self.blocks = layout_from_json(state.get("blocks"))
            netG, _ = self._build(self.data_shape, self.num_classes, self.resolved)
            netG.load_state_dict(state["ema"])
        self.netG = netG.eval()
        self.ema = neural.loaded_ema(netG, self.resolved.ema_decay)
        self.snapshots = state.get("snapshots") or {}
        self.privacy = dict(state.get("privacy") or {})


def _private_config(given: GANConfig, c: GANConfig) -> GANConfig:
    """``c`` (the resolved config) for a private fit: no R1 penalty, no packing, no mixed
    precision; what the user set against that is an InputError."""
    refusals = [
        (given.r1_gamma not in (None, 0), "a private gan trains D without the R1 penalty (a gradient of each row's "
                                          "gradient): leave r1_gamma unset or set it to 0"),
        (c.loss == "wgan", "a private gan cannot use loss=wgan (its gradient penalty mixes real and fake rows): "
                           "use ns, hinge or lsgan"),
        (given.pack not in (None, 1), "a private gan judges rows one at a time: leave pack unset or set it to 1"),
        (bool(given.augment), "a private gan does not augment images (augment=false)"),
    ]
    for refused, why in refusals:
        if refused:
            raise InputError(why)
    return dataclasses.replace(c, r1_gamma=0.0, pack=1, amp=False, augment=False)


def gradient_penalty(netD, real: torch.Tensor, fake: torch.Tensor, y, eps: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani 2017): E[(||grad D(x_hat)|| - 1)^2] on random interpolates x_hat
    (``eps``: the interpolation weights per row, uniform draws by default)."""
    if eps is None:
        eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(netD(x_hat, y).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
