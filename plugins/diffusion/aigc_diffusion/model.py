"""The ``diffusion`` model: a continuous-time variance-preserving Gaussian diffusion (VDM,
Kingma et al. 2021) trained through the core's step loop on the denoising loss, with the
weighting of the likelihood bound (``elbo``) or the simple one (``simple``, Ho et al. 2020),
predicting eps or v (Salimans & Ho 2022); conditional on classes with classifier-free guidance
(Ho & Salimans 2021); an EMA of the weights for sampling and likelihoods."""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import torch

from aigc_engine import (EMA, InputError, Model, Run, class_frequencies, conditional_classes, fabric, metrics, neural,
                         sample_labels)
from aigc_engine.config import data_kind
from aigc_engine.privacy import DPSGD, PrivacyBudget, budget_of, reported

from . import likelihoods
from .config import DEFAULTS, DiffusionConfig, check_pairs, resolved
from .inpaint import known_coordinates, project_sets
from .networks import PointNet, UNet, check_image_shape
from .samplers import sample_loop
from .schedules import LearnedSchedule, Schedule, alpha_sigma

VALIDATION_DRAWS = 8  # times and noises per held-out row in early stopping's loss (fixed across evaluations)


class Diffusion(Model):
    """Continuous-time VP diffusion (cosine or linear log-SNR schedule, eps or v prediction,
    ELBO or simple weighting; an MLP for points, a U-Net for images; classifier-free guidance;
    DDPM, DDIM and DPM-Solver++(2M) samplers; the probability-flow ODE likelihood for points and
    the discrete variational bound for images)."""

    name = "diffusion"
    Config = DiffusionConfig
    default_dataset = "ring8"
    defaults_by_kind = DEFAULTS  # what ``aigc-engine models`` lists; resolved at fit (``config.resolved``)
    supports_privacy = True  # run.privacy: DP-SGD on the denoiser (docs/privacy.md)

    def __init__(self, config: DiffusionConfig | None = None):
        super().__init__(config)
        check_pairs(self.config)
        self.privacy: dict[str, Any] = {}  # what a private fit spent (summary.json)
        self.net: torch.nn.Module | None = None
        self.ema: EMA | None = None
        self.num_classes = 0
        self.class_freq: torch.Tensor | None = None
        self.resolved: DiffusionConfig | None = None
        self.snapshots: dict[str, Any] = {}
        self.data_shape: tuple[int, ...] = ()
        self.scale = 1.0
        self.levels = 0
        self.blocks: list = []  # a table's typed blocks (aigc_engine.tables.Block); empty for points and images

    # -- construction --------------------------------------------------------------------------
    def _build(self, shape: tuple[int, ...], num_classes: int, c: DiffusionConfig) -> torch.nn.Module:
        if len(shape) == 3:
            why = check_image_shape(shape)
            if why:
                raise InputError(why)
            if c.channels < 8:
                raise InputError(f"the U-Net needs channels >= 8, got {c.channels}")
            return self._with_schedule(UNet(shape, num_classes, c.channels), c)
        if len(shape) != 1:
            raise InputError(f"the diffusion model takes points N x D or images N x C x H x W, got rows of shape {list(shape)}")
        if c.width < 1:
            raise InputError(f"the points network needs width >= 1, got {c.width}")
        return self._with_schedule(PointNet(shape[0], num_classes, c.width, c.depth, c.fourier), c)

    @staticmethod
    def _with_schedule(net: torch.nn.Module, c: DiffusionConfig) -> torch.nn.Module:
        """A learned schedule is a submodule of the network (``net.schedule``): trained with it
        (gradients averaged by DDP), averaged by the EMA, saved in the checkpoint."""
        if c.schedule == "learned":
            net.schedule = LearnedSchedule(c.logsnr_min, c.logsnr_max)
        return net

    def validate(self, dataset) -> None:
        """The config for this data's kind, the network for its shape, the training rows against
        the batch (the engine calls it before it makes a run directory)."""
        c = resolved(self.config, dataset)
        check_pairs(c)
        self._build(tuple(dataset.shape[1:]), conditional_classes(dataset, c.conditional), c)
        train = len(dataset) - int(round(len(dataset) * c.validation)) - int(round(len(dataset) * c.test))
        if c.validation and int(round(len(dataset) * c.validation)) < 1:
            raise InputError(f"validation={c.validation} holds out no row of the {len(dataset)} of dataset "
                             f"{dataset.name!r}: set validation=0 (no early stopping) or a larger fraction")
        if c.batch_size > train:
            raise InputError(f"batch_size={c.batch_size} is more than the {train} training rows of dataset {dataset.name!r}")

    def validate_privacy(self, dataset, budget) -> None:
        """What a private fit refuses (a learned schedule), before the engine makes a run
        directory."""
        if self.config.schedule == "learned":
            raise InputError("a private diffusion model cannot learn its schedule (its gradient is of the batch's "
                             "squared loss): use schedule=cosine or linear")

    @property
    def schedule(self) -> Schedule | LearnedSchedule:
        """The schedule of sampling (a learned one: the EMA network's)."""
        c = self.resolved
        if c.schedule == "learned":
            return self._fitted().schedule
        return Schedule(c.schedule, c.logsnr_min, c.logsnr_max, c.logsnr_shift)

    # -- training ------------------------------------------------------------------------------
    def _loss(self, net, x: torch.Tensor, y: torch.Tensor | None, run: Run) -> torch.Tensor:
        """The denoising loss of one batch: ELBO weighting with the log-SNR drawn uniformly (the
        bound's integral over lambda, schedule-free) or from a learned schedule (``lambda(t)``
        at ``t`` uniform, weighted by ``-dlambda/dt``: the same bound, importance-sampled), or the
        simple weighting with t uniform. A learned schedule's parameters get the gradient of the
        mean squared per-row loss (the estimate's variance, as the mean does not depend on them;
        VDM section 3.5), the network's that of the mean."""
        c, n = self.resolved, len(x)
        # the noise of the global batch, this process's share of it: results do not depend on the
        # number of processes (on one process the same draws as torch.rand / randn_like)
        rows = c.batch_size if run.world_size > 1 else n
        u = (torch.rand((), device=x.device) + torch.arange(rows, device=x.device) / rows) % 1  # stratified
        u = fabric.rank_share(u, run.rank, run.world_size)
        eps = run.randn(rows, *x.shape[1:]).to(x.dtype)
        if y is not None and c.label_dropout > 0:
            y = torch.where(run.rand(rows) < c.label_dropout, torch.full_like(y, self.num_classes), y)
        return self._denoising_loss(net, self.net, x, y, u, eps, run.autocast(c.amp))

    def _denoising_loss(self, net, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                        u: torch.Tensor, eps: torch.Tensor, autocast=None) -> torch.Tensor:
        """The loss of rows ``x`` at times ``u`` with noise ``eps`` (``module``: the network whose
        learned schedule, if any, maps ``u`` to log-SNR; ``net``: what is called, maybe wrapped,
        inside ``autocast`` when given)."""
        c, n = self.resolved, len(x)
        learned = module.schedule if c.schedule == "learned" else None
        if learned is not None:
            lam, weight = learned(u), -learned.derivative(u)
        elif c.weighting == "elbo":
            lam, weight = c.logsnr_min + (c.logsnr_max - c.logsnr_min) * u, c.logsnr_max - c.logsnr_min
        else:
            lam = self.schedule(u)
        a, s = alpha_sigma(lam)
        shape = (n, *([1] * (x.dim() - 1)))
        z = a.view(shape) * x + s.view(shape) * eps
        with autocast if autocast is not None else contextlib.nullcontext():
            out = net(z, lam, y).float()
        if c.weighting == "elbo":  # nats per row: -dlambda/dt / 2 ||eps - eps_hat||^2
            eps_hat = out if c.target == "eps" else s.view(shape) * z + a.view(shape) * out
            rows_loss = 0.5 * weight * (eps - eps_hat).flatten(1).pow(2).sum(1)
            if learned is not None and lam.requires_grad:  # d mean(L^2) / d lambda_i = 2 L_i d mean(L) / d lambda_i
                factor = 2 * rows_loss.detach()
                lam.register_hook(lambda g: g * factor)
                weight.register_hook(lambda g: g * factor)
            return rows_loss.mean()
        truth = eps if c.target == "eps" else a.view(shape) * eps - s.view(shape) * x
        return (truth - out).pow(2).mean()

    @torch.no_grad()
    def _validation_loss(self, x: torch.Tensor, y: torch.Tensor | None, seed: int) -> float:
        """The EMA network's denoising loss on the held-out rows, ``VALIDATION_DRAWS`` times each,
        with the same times and noise at every evaluation (common random numbers: differences
        between evaluations are the network's) from a private generator (the run's stream, and so
        --resume, is untouched)."""
        module = self.ema.module
        training = module.training
        module.eval()
        gen = torch.Generator().manual_seed(seed + 11)
        x = x.repeat(VALIDATION_DRAWS, *([1] * (x.dim() - 1)))
        y = y.repeat(VALIDATION_DRAWS) if y is not None else None
        u = ((torch.arange(len(x)) + torch.rand(len(x), generator=gen)) / len(x))[torch.randperm(len(x), generator=gen)]
        eps = torch.randn(x.shape, generator=gen)
        device = next(module.parameters()).device
        total = 0.0
        for i in range(0, len(x), 4096):
            part = slice(i, i + 4096)
            yb = y[part].to(device) if y is not None else None
            loss = self._denoising_loss(module, module, x[part].to(device), yb, u[part].to(device), eps[part].to(device))
            total += float(loss) * len(x[part])
        module.train(training)
        return total / len(x)

    def fit(self, dataset, run: Run) -> None:
        """Train on the rows left after ``validation`` and ``test``; with ``validation`` rows, every
        ``eval_every`` steps the EMA network's denoising loss on them, training stopped after
        ``patience`` evaluations without a lower one and the EMA weights of the lowest kept."""
        self.validate(dataset)
        c = self.resolved = resolved(self.config, dataset)
        self.data_shape = tuple(dataset.shape[1:])
        self.num_classes = conditional_classes(dataset, c.conditional)
        parts = dataset.split(c.validation, c.test, seed=run.seed) if c.validation or c.test else {"train": dataset}
        train, val = parts["train"], parts["validation"] if c.validation else None
        budget = budget_of(run)
        if budget is not None:  # no early stopping: the held-out loss would read rows outside the accounting
            return self._fit_private(train, dataset, run, budget)
        self.class_freq = class_frequencies(train, self.num_classes)
        self.scale = neural.data_scale(train.x, c.standardize and not dataset.is_image)
        self.levels = dataset.levels if dataset.is_image else 0
        self.blocks = list(dataset.encoding.blocks) if data_kind(dataset) == "tables" else []
        self.net = self._build(self.data_shape, self.num_classes, c).to(run.device)
        self.ema = EMA(self.net, c.ema_decay, warmup=True)
        net = run.wrap(self.net)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr)
        # gradients clipped: the network's (a learned schedule's are of the squared loss, larger)
        clipped = [p for name, p in self.net.named_parameters() if not name.startswith("schedule.")]
        # linear warm-up, then cosine decay to 0 at the last step
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / max(1, c.warmup)) * 0.5 * (
            1 + math.cos(math.pi * min(i, c.steps) / c.steps)))
        batches = run.batches(train, c.batch_size, drop_last=True)
        self.snapshots = neural.new_snapshots()
        stopping = neural.EarlyStopping(c.patience)
        x_val = neural.scaled(val.x, self.scale) if val is not None else None
        y_val = val.y if val is not None and self.num_classes else None
        loop = run.loop(c.steps, {"net": net, "opt": opt, "sched": sched, "ema": self.ema, "data": batches,
                                  "snapshots": self.snapshots, "stopping": stopping},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every, desc="diffusion")
        for step in loop:
            x, y = next(batches)
            x = neural.scaled(x, self.scale)
            loss = self._loss(net, x, y if self.num_classes else None, run)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(clipped, c.grad_clip) if c.grad_clip else torch.zeros(())
            opt.step()
            sched.step()
            self.ema.update(net)
            loop.log(loss=loss, grad_norm=grad_norm)
            if x_val is not None and (step % c.eval_every == 0 or step == c.steps):
                val_loss = self._validation_loss(x_val, y_val, run.seed)
                loop.log(val_loss=val_loss)
                if stopping.update(val_loss, step, self.ema.module):
                    loop.stop()
            if c.snapshots and neural.snapshot_due(step, c.steps, c.snapshots):
                neural.take_snapshot(self.snapshots, step, self.ema.module, lambda: self._fixed_noise_samples(run.seed))
        stopping.restore(self.ema.module)  # the lowest held-out loss's EMA weights
        self.best_step, self.best_val_loss = stopping.step, stopping.best
        self.net.eval()
        self.ema.module.eval()

    # -- the private fit (docs/privacy.md) ------------------------------------------------------
    def _fit_private(self, train, dataset, run: Run, budget: PrivacyBudget) -> None:
        """DP-SGD (``aigc_engine.privacy.DPSGD``, on opacus) on the denoiser, the one network that
        reads the training rows: a Poisson sample of them per step, each row's denoising loss
        (its own log-SNR and noise, drawn independently: no stratification over the batch)
        clipped, their sum noised. The EMA of the weights is post-processing; the class rates
        are noisy counts in the same budget; points are trained in their own scale."""
        c = self.resolved
        if run.world_size > 1:
            raise InputError("a private fit runs on one process (DP-SGD here is not distributed)")
        self.validate_privacy(train, None)
        dp = DPSGD(budget, len(train), c.batch_size, c.steps, max_grad_norm=c.privacy_clip,
                   accountant=c.privacy_accountant, counts=bool(self.num_classes), device=run.device)
        self.class_freq = dp.class_frequencies(train.y, self.num_classes) if self.num_classes else None
        self.scale, self.levels = 1.0, dataset.levels if dataset.is_image else 0
        self.net = self._build(self.data_shape, self.num_classes, c).to(run.device)
        self.ema = EMA(self.net, c.ema_decay, warmup=True)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / max(1, c.warmup)) * 0.5 * (
            1 + math.cos(math.pi * min(i, c.steps) / c.steps)))
        net, opt = dp.make_private(self.net, opt)
        x_all = train.x.to(run.device)
        y_all = train.y.to(run.device) if self.num_classes else None
        self.snapshots = neural.new_snapshots()
        loop = run.loop(c.steps, {"net": net, "opt": opt, "sched": sched, "ema": self.ema, "snapshots": self.snapshots,
                                  "privacy": dp}, log_every=c.log_every, checkpoint_every=c.checkpoint_every,
                        desc="diffusion (DP-SGD)")
        for step in loop:
            rows = dp.batch().to(run.device)
            if len(rows):
                loss = self._private_loss(net, x_all[rows], y_all[rows] if y_all is not None else None, run)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loop.log(loss=loss)
            else:  # an empty sample: the noise alone
                dp.noise_step(net, opt)
            sched.step()
            self.ema.update(self.net)
            if c.snapshots and neural.snapshot_due(step, c.steps, c.snapshots):
                neural.take_snapshot(self.snapshots, step, self.ema.module, lambda: self._fixed_noise_samples(run.seed))
        dp.close()
        self.privacy = dp.spent()
        self.net.eval()
        self.ema.module.eval()

    def _private_loss(self, net, x: torch.Tensor, y: torch.Tensor | None, run: Run) -> torch.Tensor:
        """The denoising loss of :meth:`_loss` (fixed schedules) with each row's log-SNR drawn on
        its own, as a mean of the rows' own losses."""
        c, n = self.resolved, len(x)
        u = run.rand(n)
        eps = run.randn(n, *x.shape[1:]).to(x.dtype)
        if y is not None and c.label_dropout > 0:
            y = torch.where(run.rand(n) < c.label_dropout, torch.full_like(y, self.num_classes), y)
        return self._denoising_loss(net, self.net, x, y, u, eps)

    def _fixed_noise_samples(self, seed: int) -> torch.Tensor:
        """Samples of the EMA network from one fixed noise (a private generator: the run's random
        stream, and so --resume, is untouched)."""
        n = 64 if len(self.data_shape) == 3 else 256 if self.blocks else 1000  # a table's: fewer, they cost its fit
        gen = torch.Generator().manual_seed(seed + 7)
        labels = (torch.arange(n) % self.num_classes) if self.num_classes else None
        return self._sample(torch.randn(n, *self.data_shape, generator=gen), labels, generator=gen)

    # -- sampling ------------------------------------------------------------------------------
    def _fitted(self) -> torch.nn.Module:
        return neural.fitted(self.ema, "diffusion").module

    def eps_fn(self, labels: torch.Tensor | None = None, guidance: float | None = None):
        """The EMA network's noise prediction ``eps(z, logsnr)`` for the rows' ``labels``
        (None: unconditional), guided: ``eps_u + guidance (eps_c - eps_u)`` (0: the unconditional
        model, 1: the conditional one)."""
        net, c = self._fitted(), self.resolved
        g = c.guidance if guidance is None else guidance
        device = next(net.parameters()).device
        null = torch.full((1,), self.num_classes, dtype=torch.int64, device=device)

        def predict(z, lam, y):
            lam_rows = torch.as_tensor(lam, dtype=torch.float32, device=device).expand(len(z))
            out = net(z, lam_rows, y).float()
            if c.target == "v":
                a, s = alpha_sigma(lam_rows)
                shape = (len(z), *([1] * (z.dim() - 1)))
                out = s.view(shape) * z + a.view(shape) * out
            return out

        def eps(z, lam):
            if not self.num_classes:
                return predict(z, lam, None)
            if labels is None or g == 0:
                return predict(z, lam, null.expand(len(z)))
            y = labels.to(device)
            if g == 1:
                return predict(z, lam, y)
            both = predict(torch.cat([z, z]), lam, torch.cat([y, null.expand(len(z))]))
            cond, uncond = both.chunk(2)
            return uncond + g * (cond - uncond)
        return eps

    @torch.no_grad()
    def _sample(self, noise: torch.Tensor, labels: torch.Tensor | None, generator=None, record=None,
                guidance: float | None = None, known=None) -> torch.Tensor:
        c = self.resolved
        net = self._fitted()
        net.eval()
        device = next(net.parameters()).device
        grid = Schedule("linear", c.logsnr_min, c.logsnr_max) if c.sample_grid == "logsnr" else self.schedule
        known = None if known is None else (known[0].to(device), (known[1] / self.scale).to(device))
        x = sample_loop(self.eps_fn(labels, guidance), noise.to(device), grid, c.sample_steps, c.sampler,
                        c.eta, generator=generator, record=record, clip=c.clip, known=known)
        return x.float().cpu() * self.scale

    def sample(self, n: int, condition: torch.Tensor | None = None, guidance: float | None = None) -> torch.Tensor:
        """``n`` samples of the EMA network with the config's sampler; ``condition``: labels
        (conditional models; without it labels are drawn from the training frequencies)."""
        self._fitted()
        neural.check_count(n)
        y = sample_labels(n, condition, self.num_classes, self.class_freq, "diffusion model")
        return self._sample(torch.randn(n, *self.data_shape), y, guidance=guidance)

    def sample_conditioned(self, n: int, where, class_weights: torch.Tensor | None = None):
        """Rows under a table's conditions by inpainting (:mod:`aigc_diffusion.inpaint`): exact
        for categories and point values; ranges are left to the engine's rejection (None when
        the conditions fix no coordinate). A conditional model's labels are drawn at
        ``class_weights``."""
        self._fitted()
        known = known_coordinates(where, self.data_shape[0]) if len(self.data_shape) == 1 else None
        if known is None:
            return None
        neural.check_count(n)
        y = torch.multinomial(class_weights, n, replacement=True) if self.num_classes and class_weights is not None \
            else sample_labels(n, None, self.num_classes, self.class_freq, "diffusion model")
        return project_sets(self._sample(torch.randn(n, *self.data_shape), y, known=known), where), y

    # -- likelihoods ---------------------------------------------------------------------------
    @property
    def log_prob_kind(self):
        return "discrete_bound" if self.levels else "exact"

    def log_prob(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Per row, float64: images on pixel levels the variational bound of log P(x) (of
        log P(x | c) with a condition; without one the bound of the class mixture,
        logsumexp_c [log p(c) + bound_c]); points the probability-flow ODE's log p(x)."""
        return self.log_prob_and_error(x, condition)[0]

    def _trace(self) -> str:
        """The trace the ODE likelihood uses: ``trace``, with ``auto`` resolved by the dimension."""
        c = self.resolved
        if c.trace != "auto":
            return c.trace
        return "exact" if math.prod(self.data_shape) <= c.probes else "hutchinson"

    def log_prob_and_error(self, x: torch.Tensor, condition=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``log_prob`` and its standard error per row (the Hutchinson estimator's; 0 for the exact
        trace and for images: their bound's Monte Carlo error is not reported per row)."""
        net, c = self._fitted(), self.resolved
        x = x.to(next(net.parameters()).device)
        if self.levels:
            def bound(labels):
                return -likelihoods.discrete_bound(self.eps_fn(labels, 1.0), x, self.levels, c.logsnr_min,
                                                   c.logsnr_max, c.bound_draws).cpu()
            if not self.num_classes:
                out = bound(None)
            elif condition is not None:
                out = bound(torch.as_tensor(condition, dtype=torch.int64).reshape(-1).expand(len(x)))
            else:
                per_class = torch.stack([bound(torch.full((len(x),), k)) for k in range(self.num_classes)], 1)
                out = torch.logsumexp(per_class + self.class_freq.double().log(), 1)
            return out, torch.zeros_like(out)
        labels = None
        if self.num_classes:
            labels = torch.as_tensor(condition, dtype=torch.int64).reshape(-1).expand(len(x)) if condition is not None else None
        gen = torch.Generator().manual_seed(0)
        d = math.prod(x.shape[1:])
        # a grid uniform in log-SNR: the cosine grid is coarse at the data end, where sharp data
        # (ring8's modes) make the ODE's divergence change fastest (measured: the cosine grid's
        # estimate still falls by 0.4 nats from 100 to 200 steps there, the uniform one's by 0.02
        # from 50 to 100)
        grid = Schedule("linear", c.logsnr_min, c.logsnr_max)
        logp, se = likelihoods.ode_log_likelihood(self.eps_fn(labels, 1.0), x / self.scale, grid, c.ode_steps,
                                                  c.probes, self._trace(), generator=gen)
        return logp - d * math.log(self.scale), se

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        """On the held-out rows (``test``): the log-likelihood (points: the ODE's, nats per row,
        with its standard error, on up to 2000 rows; images: the bound, -log p(x) in nats and
        bits/dim, on up to 500); mode coverage where the data has modes; for labelled images the
        judge's sample metrics."""
        c = self.resolved
        out: dict[str, float] = {}
        test = dataset.split(c.validation, c.test, seed=run.seed)["test"] if c.test else None
        if test is not None and len(test):
            d = math.prod(self.data_shape)
            x = test.x[:500 if self.levels else 2000]
            if self.levels:
                nll = -float(self.log_prob(x).mean())
                out.update(test_nll_x=nll, bpd_x=nll / (d * math.log(2)))
                if self.num_classes:
                    y = test.y[:500]
                    out["test_nll_x_given_c"] = -float(torch.cat([self.log_prob(x[y == k], k)
                                                                  for k in range(self.num_classes) if (y == k).any()]).mean())
            else:
                logp, se = self.log_prob_and_error(x)
                out["test_log_likelihood"] = float(logp.mean())
                out["test_log_likelihood_se"] = float(se.pow(2).sum().sqrt() / len(se))  # 0: exact trace
        if dataset.modes is not None and not dataset.is_image:
            out.update(metrics.mode_coverage(self.sample(2500), dataset.modes, dataset.mode_std))
        if dataset.is_image and self.num_classes:
            labels = torch.arange(self.num_classes).repeat_interleave(200)
            out.update(metrics.image_metrics(dataset, self.sample(len(labels), condition=labels), labels,
                                             device=run.device))
        out.update(reported(self.privacy))  # a private fit's spend: privacy_epsilon, ...
        return out

    def figures(self, dataset) -> dict[str, Any]:
        """``progress.png`` (samples from one fixed noise over training) and ``denoising.png``
        (samples from noise to data over the sampler's steps)."""
        if self.ema is None:
            return {}
        figs: dict[str, Any] = {}
        data = None if dataset.is_image else dataset.subsample(2000)
        figs.update(neural.progress_figure(self.snapshots, f"diffusion on {dataset.name}: samples from a fixed noise",
                                           data))
        figs["denoising.png"] = lambda path: self._draw_denoising(path, data, dataset.name)
        return figs

    def _draw_denoising(self, path, data, name: str) -> None:
        from aigc_engine import plotting

        image = len(self.data_shape) == 3
        n = max(1, self.num_classes) if image else 1000
        gen = torch.Generator().manual_seed(3)
        labels = torch.arange(self.num_classes) if (self.num_classes and image) else None
        if self.num_classes and not image:
            labels = torch.arange(n) % self.num_classes
        record: list[torch.Tensor] = []
        self._sample(torch.randn(n, *self.data_shape, generator=gen), labels, generator=gen, record=record)
        picks = sorted({round(i * (len(record) - 1) / 7) for i in range(8)})
        frames = [record[i] * self.scale for i in picks]
        title = f"diffusion on {name}: {self.resolved.sampler}, {self.resolved.sample_steps} steps, noise to data"
        if image:  # one row per sample, one column per picked step
            grid = torch.stack(frames, 1).reshape(-1, *self.data_shape).clamp(-1, 1)
            plotting.image_grid(grid, path, ncols=len(frames), title=title)
        else:
            _scatter_frames(picks, frames, path, title)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._fitted()
        return {"config": dataclasses.asdict(self.resolved), "data_shape": list(self.data_shape), "scale": self.scale,
                "levels": self.levels, "num_classes": self.num_classes, "class_freq": self.class_freq,
                "ema": self.ema.module.state_dict(), "snapshots": self.snapshots,
                **({"privacy": self.privacy} if self.privacy else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with neural.reading_state("diffusion"):
            self.data_shape = tuple(state["data_shape"])
            saved = {"logsnr_shift": 0.0, **dict(state["config"])}  # saved before the shift existed: none
            self.resolved = resolved(DiffusionConfig(**saved), "images" if len(self.data_shape) == 3 else "points")
            self.num_classes = int(state["num_classes"])
            self.class_freq = state.get("class_freq")
            self.scale, self.levels = float(state["scale"]), int(state["levels"])
            net = self._build(self.data_shape, self.num_classes, self.resolved)
            net.load_state_dict(state["ema"])
        self.net = net.eval()
        self.ema = neural.loaded_ema(net, self.resolved.ema_decay)
        self.snapshots = state.get("snapshots") or {}
        self.privacy = dict(state.get("privacy") or {})


def _scatter_frames(steps: list[int], frames: list[torch.Tensor], path, title: str) -> None:
    """One scatter panel per sampler step, each in its own frame (the noisy states are wider
    than the data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, (len(frames) + 1) // 2, figsize=(3 * ((len(frames) + 1) // 2), 6), squeeze=False)
    for ax in axes.flat[len(frames):]:
        ax.set_axis_off()
    for ax, step, f in zip(axes.flat, steps, frames):
        p = f[:, :2].numpy()
        ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:red", alpha=0.5, rasterized=True)
        ax.set_title(f"sampler step {step}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
