"""The ``cvae`` model: a conditional VAE (a VAE when the labels are not classes) trained on the
ELBO (images) or the importance-weighted bound with ``train_k`` draws (points, Burda et al. 2016)
through the core's step loop, with early stopping on a held-out split and importance-weighted
likelihoods."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import torch

from aigc_engine import InputError, Model, Run, class_frequencies, conditional_classes, metrics, neural, sample_labels
from aigc_engine.config import data_kind, option, resolve_defaults
from aigc_engine.privacy import DPSGD, PrivacyBudget, budget_of, reported
from aigc_engine.tables import layout_from_json, layout_to_json

from . import likelihoods
from .networks import CVAENet

TABLE_STEPS = 6000  # the most default steps on a table; fewer on small ones (config.fit_to_table)
TABLE_EPOCHS = 300  # passes over a small table's training rows in a default run
TABLE_MIN_STEPS = 700  # the fewest default steps on a table: 1000 memorise wine's 100 training rows

DEFAULTS = {
    # points: the IWAE bound with 32 draws (a tight bound on log p(x) that lets q spread over the
    # prior instead of leaving holes that decode between the modes), 3 x 128 MLPs, 64 rows a step
    "points": dict(steps=12000, latent_dim=2, width=128, depth=3, batch_size=64, lr=2e-3, lr_schedule="cosine",
                   eval_every=100, patience=30, train_k=32),
    "images": dict(steps=20000, latent_dim=16, width=256, depth=2, batch_size=100, lr=1e-3, lr_schedule="constant",
                   eval_every=50, patience=40, train_k=1),
    # tables: the ELBO (the IWAE bound's weights overflow on tables of tens of columns), a
    # likelihood per block (Gaussian values, categorical one-hots, Bernoulli indicators); the
    # batch at most the training rows, the steps TABLE_EPOCHS passes over them (CVAE.resolve)
    "tables": dict(steps=TABLE_STEPS, latent_dim=8, width=128, depth=2, batch_size=64, lr=1e-3,
                   lr_schedule="cosine", eval_every=50, patience=20, train_k=1),
}


@dataclasses.dataclass
class CVAEConfig:
    """Hyper-parameters of the ``cvae`` model; None means the default for the data's kind (points or
    images, see ``aigc_cvae.model.DEFAULTS``)."""
    steps: int | None = option(None, help="most training steps; early stopping may end sooner", ge=1)
    batch_size: int | None = option(None, help="rows per step", ge=1)
    lr: float | None = option(None, help="Adam learning rate", gt=0)
    lr_schedule: Literal["constant", "cosine"] | None = option(None, help="learning-rate schedule")
    latent_dim: int | None = option(None, help="latent dimensions", ge=1)
    width: int | None = option(None, help="hidden units of the mlp or base channels of the conv net", ge=0)
    depth: int | None = option(None, help="hidden layers", ge=0)
    embed_dim: int = option(16, help="label embedding size of a conditional model", ge=1)
    arch: Literal["auto", "mlp", "conv"] = option("auto", help="network kind; auto: mlp")
    beta: float = option(1.0, help="weight of the KL term", ge=0)
    kl_warmup: int = option(1000, help="steps over which beta rises from 0", ge=0)
    free_bits: float = option(0.0, help="free bits per latent dimension, for the ELBO", ge=0)
    prior: Literal["learned", "standard"] = option("learned", help="p(z|c): learned, or N(0, I)")
    decoder: Literal["auto", "gaussian", "discretized_logistic", "discretized_gaussian", "table"] = option(
        "auto", help="p(x|z,c); auto: table for tables, discretized_logistic for images on levels, else gaussian")
    conditional: Literal["auto", "true", "false"] = option("auto", help="condition on class labels")
    validation: float = option(0.1, help="held-out fraction for early stopping", ge=0, lt=1)
    test: float = option(0.1, help="held-out fraction for the test likelihoods", ge=0, lt=1)
    eval_every: int | None = option(None, help="steps between validation evaluations", ge=1)
    patience: int | None = option(None, help="evaluations without improvement before stopping", ge=1)
    val_samples: int = option(5, help="draws of z per validation ELBO", ge=1)
    iwae_k: int = option(1000, help="importance samples of the IWAE likelihoods", ge=1)
    train_k: int | None = option(None, help="draws of z in the trained bound; 1: ELBO, more: IWAE", ge=1)
    temperature: float = option(1.0, help="scale of the prior's std when sampling", gt=0)
    sample_mean: bool = option(False, help="sample the decoder's mean instead of a draw")
    log_every: int = option(50, help="steps per logged row", ge=1)
    checkpoint_every: int = option(1000, help="steps per checkpoint", ge=1)
    privacy_clip: float = option(1.0, help="a private run's bound on each row's gradient (DP-SGD)", gt=0)
    privacy_accountant: Literal["rdp", "prv"] = option("rdp", help="a private run's accountant (opacus')")


def _check_bound(c: CVAEConfig) -> None:
    """The one rule between fields: free bits are a form of the ELBO."""
    if c.train_k is not None and c.train_k > 1 and c.free_bits:
        raise InputError("cvae: free_bits applies to the ELBO (train_k=1), not to the IWAE bound (train_k > 1)")


class CVAE(Model):
    """Conditional VAE with a learned prior p(z|c) and a Gaussian decoder p(x|z,c) (integrated over
    each level's bin for discrete images; on a table a likelihood per block: Gaussian values,
    categorical one-hots, Bernoulli missing indicators); a VAE when unconditional. Trained on the ELBO
    (``train_k = 1``) or the IWAE bound with ``train_k`` draws of z; early stopping on the held-out
    value of the trained bound; IWAE likelihoods in nats and bits/dim."""

    name = "cvae"
    Config = CVAEConfig
    default_dataset = "digits"
    defaults_by_kind = DEFAULTS
    supports_privacy = True  # run.privacy: DP-SGD on the encoder and decoder (docs/privacy.md)

    def __init__(self, config: CVAEConfig | None = None):
        super().__init__(config)
        _check_bound(self.config)
        self.privacy: dict[str, Any] = {}  # what a private fit spent (summary.json)
        self.net: CVAENet | None = None
        self.resolved: CVAEConfig | None = None
        self.num_classes = 0
        self.class_freq: torch.Tensor | None = None
        self.levels = 0
        self.decoder = "gaussian"
        self.shape: tuple[int, ...] = ()
        self.blocks: list = []  # a table's typed blocks (aigc_engine.tables.Block), for decoder=table

    # -- construction --------------------------------------------------------------------------
    def resolve(self, dataset) -> CVAEConfig:
        """The config for this data: fields left at None take the defaults of its kind; on a table
        the default batch is at most its training rows and the default steps ``TABLE_EPOCHS``
        passes over them (at least ``TABLE_MIN_STEPS``, at most ``TABLE_STEPS``)."""
        c = self.config
        rows = max(1, round(len(dataset) * (1 - c.validation - c.test)))  # the training rows
        c = resolve_defaults(c, DEFAULTS, dataset, table_epochs=TABLE_EPOCHS, table_rows=rows,
                             table_min_steps=TABLE_MIN_STEPS)
        return dataclasses.replace(c, arch="mlp") if c.arch == "auto" else c

    def _setup(self, dataset) -> None:
        c = self.resolved = self.resolve(dataset)
        _check_bound(c)
        if c.arch == "conv" and (not dataset.is_image or dataset.shape[2] % 2 or dataset.shape[3] % 2):
            raise InputError("arch=conv takes images of even height and width; use arch=mlp")
        self.num_classes = conditional_classes(dataset, c.conditional)
        self.shape = tuple(dataset.shape[1:])
        tables = data_kind(dataset) == "tables"
        self.blocks = list(dataset.encoding.blocks) if tables else []
        if c.decoder == "auto":
            self.levels = dataset.levels if dataset.is_image else 0
            self.decoder = "table" if tables else "discretized_logistic" if self.levels else "gaussian"
        elif c.decoder == "table":
            if not tables:
                raise InputError(f"decoder=table takes a table (a CSV file); {dataset.name!r} is not one: use auto")
            self.decoder, self.levels = "table", 0
        else:
            self.decoder = c.decoder
            self.levels = dataset.levels if c.decoder != "gaussian" else 0
            if c.decoder != "gaussian" and not self.levels:
                raise InputError(f"decoder={c.decoder} needs data on evenly spaced levels in [-1, 1] "
                                 f"(like 8-bit or 17-level images); {dataset.name!r} is continuous: use gaussian")

    def _build(self) -> CVAENet:
        c = self.resolved
        return CVAENet(self.shape, c.latent_dim, self.num_classes, c.width, c.depth, c.embed_dim, c.prior, c.arch,
                       self.decoder, self.levels, self.blocks)

    def validate(self, dataset) -> None:
        """Checked before the engine makes a run directory: the config for this data, its split."""
        self._setup(dataset)
        c = self.resolved
        parts = dataset.split(c.validation, c.test, seed=0)
        if len(parts["validation"]) == 0:
            raise InputError("the CVAE needs a validation split for early stopping: set validation > 0")
        if len(parts["train"]) < 2:
            raise InputError(f"dataset {dataset.name!r} leaves {len(parts['train'])} training rows after the split")

    def validate_privacy(self, dataset, budget) -> None:
        """What a private fit refuses (train_k > 1, free bits), before the engine makes a run
        directory."""
        _private_config(self.config, self.resolve(dataset))

    def fit(self, dataset, run: Run) -> None:
        self.validate(dataset)
        c = self.resolved
        parts = dataset.split(c.validation, c.test, seed=run.seed)
        train, val = parts["train"], parts["validation"]
        budget = budget_of(run)
        if budget is not None:
            return self._fit_private(train, run, budget)
        self.class_freq = class_frequencies(train, self.num_classes)
        self.net = self._build().to(run.device)
        net = run.wrap(self.net)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr, fused=True)
        # cosine: from lr down to 2% of it at the last step (points); constant for images, where
        # early stopping ends training long before
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if c.lr_schedule == "constant" else
                                                  0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(i, c.steps) / c.steps)))
        batches = run.batches(train, min(c.batch_size, len(train)), drop_last=True)
        x_val = val.x.to(run.device)
        y_val = val.y.to(run.device) if self.num_classes else None
        best: dict[str, Any] = {"elbo": -math.inf, "step": 0, "weights": {}, "since": 0}
        loop = run.loop(c.steps, {"net": net, "opt": opt, "sched": sched, "data": batches, "best": best},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every, desc="CVAE")
        for step in loop:
            x, y = next(batches)
            y = y if self.num_classes else None
            beta = c.beta * min(1.0, step / c.kl_warmup) if c.kl_warmup else c.beta
            # this process's rows of the global batch's noise: the same fit on any number of processes
            noise = run.randn(batches.batch_size, *([c.train_k] if c.train_k > 1 else []), c.latent_dim)
            if c.train_k > 1:  # the IWAE bound (Burda et al. 2016), log p(z) - log q tempered by beta
                rec_k, log_ratio = net(x, y, samples=c.train_k, noise=noise)
                loss = -(torch.logsumexp(rec_k + beta * log_ratio, 1) - math.log(c.train_k)).mean()
                rec, kl = rec_k[:, 0], -log_ratio[:, :1]
            else:
                rec, kl = net(x, y, noise=noise)
                kl_term = kl.mean(0).clamp(min=c.free_bits).sum() if c.free_bits else kl.sum(1).mean()
                loss = -(rec.mean() - beta * kl_term)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loop.log(recon=-rec.mean(), kl=kl.sum(1).mean(), elbo=(rec - kl.sum(1)).mean(), beta=beta)
            # early stopping on the held-out bound (ELBO or IWAE) once the KL warm-up is over (before
            # it the objective is not the bound yet, and the weights are far from a good model)
            if step >= min(c.kl_warmup, c.steps) and (step % c.eval_every == 0 or step == c.steps):
                val_elbo = self._validation_elbo(x_val, y_val, run)
                loop.log(val_elbo=val_elbo)
                if val_elbo > best["elbo"]:
                    best.update(elbo=val_elbo, step=step, since=0,
                                weights={k: v.detach().clone() for k, v in self.net.state_dict().items()})
                else:
                    best["since"] += 1
                    if best["since"] >= c.patience:
                        loop.stop()
        if best["weights"]:  # the best held-out bound's weights
            self.net.load_state_dict(best["weights"])
        self.best_step, self.best_val_elbo = int(best["step"]), float(best["elbo"])
        self.net.eval()

    def _fit_private(self, train, run: Run, budget: PrivacyBudget) -> None:
        """DP-SGD (``aigc_engine.privacy.DPSGD``, on opacus) on the whole network (encoder, decoder
        and prior all see the training rows): a Poisson sample of the training rows per step, each
        row's ELBO gradient clipped, their sum noised, for the planned ``steps``: no early
        stopping (the held-out bound would read the validation rows; its best step would be one
        more release). The class rates are noisy counts in the same budget."""
        if run.world_size > 1:
            raise InputError("a private fit runs on one process (DP-SGD here is not distributed)")
        c = self.resolved = _private_config(self.config, self.resolved)
        batch = min(c.batch_size, len(train))
        dp = DPSGD(budget, len(train), batch, c.steps, max_grad_norm=c.privacy_clip, accountant=c.privacy_accountant,
                   counts=bool(self.num_classes), device=run.device)
        self.class_freq = dp.class_frequencies(train.y, self.num_classes) if self.num_classes else None
        self.net = self._build().to(run.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, fused=True)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 if c.lr_schedule == "constant" else
                                                  0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(i, c.steps) / c.steps)))
        net, opt = dp.make_private(self.net, opt)
        x_all = train.x.to(run.device)
        y_all = train.y.to(run.device) if self.num_classes else None
        loop = run.loop(c.steps, {"net": net, "opt": opt, "sched": sched, "privacy": dp},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every, desc="CVAE (DP-SGD)")
        for step in loop:
            rows = dp.batch().to(run.device)
            if len(rows):
                y = y_all[rows] if y_all is not None else None
                rec, kl = net(x_all[rows], y, noise=run.randn(len(rows), c.latent_dim))
                beta = c.beta * min(1.0, step / c.kl_warmup) if c.kl_warmup else c.beta
                loss = -(rec.mean() - beta * kl.sum(1).mean())  # the mean of the rows' own losses
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loop.log(recon=-rec.mean(), kl=kl.sum(1).mean(), elbo=(rec - kl.sum(1)).mean(), beta=beta)
            else:  # an empty sample: the noise alone
                dp.noise_step(net, opt)
            sched.step()
        dp.close()
        self.privacy = dp.spent()
        self.best_step, self.best_val_elbo = c.steps, float("nan")
        self.net.eval()

    @torch.no_grad()
    def _validation_elbo(self, x: torch.Tensor, y, run: Run) -> float:
        """Mean ELBO (beta = 1, ``val_samples`` draws of z) of the validation rows, or with
        ``train_k > 1`` the IWAE bound that is trained (``train_k`` draws), with the same noise at every evaluation
        (common random numbers: differences between evaluations are the model's), and without
        touching the global generator (resume stays exact)."""
        g = torch.Generator(device=x.device).manual_seed(run.seed + 1)
        total = 0.0
        iwae = (self.resolved.train_k or 1) > 1  # the bound that is trained: IWAE with train_k draws, once
        draws = 1 if iwae else self.resolved.val_samples
        for _ in range(draws):
            for i in range(0, len(x), 1024):
                yb = y[i:i + 1024] if y is not None else None
                if iwae:
                    rec, log_ratio = self.net(x[i:i + 1024], yb, g, samples=self.resolved.train_k)
                    total += float((torch.logsumexp(rec + log_ratio, 1) - math.log(self.resolved.train_k)).sum())
                else:
                    rec, kl = self.net(x[i:i + 1024], yb, g)
                    total += float((rec - kl.sum(1)).sum())
        value = torch.tensor([total / (len(x) * draws)], dtype=torch.float64)
        if run.world_size > 1:  # every process computed it alike; keep them bit-identical anyway
            value = run.all_reduce(value.to(run.device)).cpu() / run.world_size
        return float(value)

    # -- likelihoods ---------------------------------------------------------------------------
    @torch.no_grad()
    def log_weights(self, x: torch.Tensor, y: torch.Tensor | None, k: int, chunk_rows: int = 4096) -> torch.Tensor:
        """``[N, k]`` float64 importance weights ``log p(x, z_j | c) - log q(z_j | x, c)``, ``z_j ~ q``."""
        net = self._fitted()
        device = next(net.parameters()).device
        out = torch.empty(len(x), k, dtype=torch.float64)
        per = max(1, chunk_rows // k)
        for i in range(0, len(x), per):
            xb = x[i:i + per].to(device)
            yb = y[i:i + per].to(device) if y is not None else None
            n = len(xb)
            rec, log_ratio = net(xb, yb, samples=k)  # the training forward's k draws
            out[i:i + n] = (rec.double() + log_ratio.double()).cpu()
        return out

    def _per_class(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """IWAE log p(x | c) ``[N, C]`` (``[N, 1]`` unconditional) and the ELBO (mean log weight)."""
        classes = range(self.num_classes) if self.num_classes else [None]
        lme, elbo = [], []
        for c in classes:
            w = self.log_weights(x, None if c is None else torch.full((len(x),), c), k)
            lme.append(_log_mean_exp(w))
            elbo.append(w.mean(1))
        return torch.stack(lme, 1), torch.stack(elbo, 1)

    def _marginal(self, per_class: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_c [log p(c) + log p(x | c)] (p(c): the training frequencies)."""
        if not self.num_classes:
            return per_class[:, 0]
        return torch.logsumexp(per_class + self.class_freq.log()[None], 1)

    def log_prob(self, x: torch.Tensor, condition: torch.Tensor | None = None, k: int | None = None) -> torch.Tensor:
        """IWAE estimate of log p(x) per row, float64 (``log mean_j w_j`` with ``k`` samples of
        q: a lower bound in expectation that tightens with k, Burda et al. 2016). Conditional
        models: log p(x | c) for a given ``condition``, else log p(x) = logsumexp_c [log p(c) +
        log p(x | c)]."""
        k = k or self.resolved.iwae_k
        if self.num_classes and condition is not None:
            y = torch.as_tensor(condition, dtype=torch.int64).reshape(-1).expand(len(x))
            return _log_mean_exp(self.log_weights(x, y, k))
        return self._marginal(self._per_class(x, k)[0])

    @property
    def log_prob_kind(self) -> str:
        """An IWAE bound: of the density of points, of the discrete probability of images on levels;
        on a table, of a mixed density (the probability of the categories and of the missing
        pattern times the density of the observed values), reported as a bound."""
        return "discrete_bound" if self.levels else "bound"

    def heldout_likelihoods(self, dataset, k: int | None = None) -> dict[str, float]:
        """Likelihood figures on held-out ``dataset``, in nats per row and bits per dimension: the
        ELBO, and the IWAE bounds of -log p(x | c) (conditional models) and -log p(x)."""
        k = k or self.resolved.iwae_k
        d = math.prod(self.shape)
        to_bpd = 1.0 / (d * math.log(2))
        lme, elbo = self._per_class(dataset.x, k)
        out: dict[str, float] = {"iwae_k": k}
        if self.num_classes:
            own = dataset.y[:, None]
            out["test_elbo"] = float(elbo.gather(1, own).mean())
            out["test_nll_x_given_c"] = -float(lme.gather(1, own).mean())
            out["bpd_x_given_c"] = out["test_nll_x_given_c"] * to_bpd
        else:
            out["test_elbo"] = float(elbo[:, 0].mean())
        nll = -float(self._marginal(lme).mean())
        out["test_nll_x"], out["bpd_x"] = nll, nll * to_bpd
        if not self.levels:  # a density: the mean log-likelihood per dimension (nats)
            out["test_log_likelihood_per_dim"] = -nll / d
        return out

    # -- sampling ------------------------------------------------------------------------------
    def _fitted(self) -> CVAENet:
        return neural.fitted(self.net, "cvae")

    @torch.no_grad()
    def sample(self, n: int, condition: torch.Tensor | None = None, temperature: float | None = None,
               mean: bool | None = None) -> torch.Tensor:
        """``n`` samples: z ~ p(z | c) (its std scaled by ``temperature``), then x ~ p(x | z, c)
        (a draw from the discrete likelihood for images on levels; on a table encoded rows with
        exact one-hots and 0/1 indicators), or with ``mean=True`` (default: the config's
        ``sample_mean``) the decoder's mean, snapped to the levels (a table's likeliest categories)."""
        net = self._fitted()
        neural.check_count(n)
        device = next(net.parameters()).device
        y = sample_labels(n, condition, self.num_classes, self.class_freq, "cvae")
        y = y.to(device) if y is not None else None
        t = self.resolved.temperature if temperature is None else temperature
        mu_p, ls_p = net.prior(y, n, device)
        z = mu_p + t * torch.exp(ls_p) * torch.randn(n, mu_p.shape[1], device=device)
        mu_x, ls_x = net.decode(z, y)
        use_mean = self.resolved.sample_mean if mean is None else mean
        if self.decoder == "table":  # in the encoded space: exact one-hots and 0/1 indicators
            x = likelihoods.table_sample(mu_x, ls_x, self.blocks, use_mean)
        elif use_mean:
            x = likelihoods.snap(mu_x, self.levels) if self.levels else mu_x
        else:
            x = likelihoods.sample(self.decoder, mu_x, ls_x, self.levels)
        return x.float().cpu()

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The decoder's mean at the encoder's mean (levels snapped; a table's likeliest categories)."""
        net = self._fitted()
        device = next(net.parameters()).device
        y = y.to(device) if (y is not None and self.num_classes) else None
        mu_x, ls_x = net.decode(net.encode(x.to(device), y)[0], y)
        if self.decoder == "table":
            return likelihoods.table_sample(mu_x, ls_x, self.blocks, mean=True).cpu()
        return (likelihoods.snap(mu_x, self.levels) if self.levels else mu_x).cpu()

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        """On the held-out test split: ELBO, IWAE -log p(x|c) and -log p(x) (nats, bits/dim); mode
        coverage where the data has modes; for labelled images the sample metrics."""
        c = self.resolved
        test = dataset.split(c.validation, c.test, seed=run.seed)["test"]
        out: dict[str, float] = {"best_step": getattr(self, "best_step", 0)}
        if not self.privacy:  # a private fit has no held-out bound: it does not stop early
            out["best_val_elbo"] = getattr(self, "best_val_elbo", float("nan"))
        out.update(reported(self.privacy))
        if len(test):
            out.update(self.heldout_likelihoods(test))
        out.update(metrics.sample_metrics(self, dataset, run.device))
        return out

    def figures(self, dataset) -> dict[str, Any]:
        """reconstructions.png, interpolation.png (images), latent.png (2-D latents)."""
        from aigc_engine import plotting

        c = self.resolved
        test = dataset.split(c.validation, c.test, seed=0)["test"]
        if not len(test):
            test = dataset
        figs: dict[str, Any] = {}
        if dataset.is_image:
            x, y = test.x[:32], test.y[:32] if test.y is not None else None
            pairs = torch.stack([x, self.reconstruct(x, y)], 1).reshape(-1, *x.shape[1:])
            figs["reconstructions.png"] = lambda path: plotting.image_grid(
                pairs, path, ncols=16, title="cvae: test images (left) and their reconstructions (right)")
            figs["interpolation.png"] = lambda path: plotting.image_grid(
                self.interpolate(test), path, ncols=10, title="cvae: latent interpolation between test images")
        if c.latent_dim == 2:
            net = self._fitted()
            with torch.no_grad():
                y = test.y if (test.y is not None and self.num_classes) else None
                z = net.encode(test.x.to(next(net.parameters()).device), y.to(next(net.parameters()).device)
                               if y is not None else None)[0].cpu()
            figs["latent.png"] = lambda path: plotting.latent_scatter(z, test.y, path, title="cvae: test encodings (q mean)")
        return figs

    @torch.no_grad()
    def interpolate(self, dataset, rows: int = 8, steps: int = 10) -> torch.Tensor:
        """``rows`` interpolations in latent space between pairs of images of one class (or any two
        when unconditional): ``rows * steps`` decoded images."""
        net = self._fitted()
        device = next(net.parameters()).device
        g = torch.Generator().manual_seed(0)
        out = []
        for r in range(rows):
            if self.num_classes and dataset.y is not None:
                idx = (dataset.y == r % self.num_classes).nonzero().flatten()
                idx = idx if len(idx) >= 2 else torch.arange(len(dataset))
            else:
                idx = torch.arange(len(dataset))
            a, b = idx[torch.randperm(len(idx), generator=g)[:2]]
            x = dataset.x[torch.stack([a, b])].to(device)
            y = dataset.y[torch.stack([a, b])].to(device) if self.num_classes else None
            mu, _ = net.encode(x, y)
            t = torch.linspace(0, 1, steps, device=device)[:, None]
            z = (1 - t) * mu[0] + t * mu[1]
            yy = y[:1].expand(steps) if y is not None else None
            mu_x, _ = net.decode(z, yy)
            out.append(likelihoods.snap(mu_x, self.levels) if self.levels else mu_x)
        return torch.cat(out).cpu()

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        net = self._fitted()
        return {"config": dataclasses.asdict(self.resolved), "data_shape": list(self.shape),
                "num_classes": self.num_classes, "class_freq": self.class_freq, "levels": self.levels,
                "decoder": self.decoder, "blocks": layout_to_json(self.blocks), "net": net.state_dict(),
                "best_step": getattr(self, "best_step", 0), "best_val_elbo": getattr(self, "best_val_elbo", 0.0),
                **({"privacy": self.privacy} if self.privacy else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with neural.reading_state("cvae"):
            self.resolved = CVAEConfig(**state["config"])
            shape = state["data_shape"] if "data_shape" in state else state["shape"]  # "shape": saved before
            self.shape, self.num_classes = tuple(shape), int(state["num_classes"])
            self.class_freq, self.levels, self.decoder = state.get("class_freq"), int(state["levels"]), state["decoder"]
            self.blocks = layout_from_json(state.get("blocks"))
            net = self._build()
            net.load_state_dict(state["net"])
        self.net = net.eval()
        self.best_step, self.best_val_elbo = int(state.get("best_step", 0)), float(state.get("best_val_elbo", 0.0))
        self.privacy = dict(state.get("privacy") or {})


def _private_config(given: CVAEConfig, c: CVAEConfig) -> CVAEConfig:
    """``c`` (the resolved config) for a private fit: the ELBO with one draw of z per row (the IWAE
    bound's draws would each be a "row" to opacus) and no free bits (a clamp over the batch
    couples the rows' gradients); what the user set against that is an InputError."""
    if given.train_k not in (None, 1):
        raise InputError("a private cvae trains the ELBO: leave train_k unset or set it to 1")
    if c.free_bits:
        raise InputError("a private cvae cannot use free_bits (a clamp of the batch's mean KL couples the rows)")
    return dataclasses.replace(c, train_k=1)


def _log_mean_exp(w: torch.Tensor) -> torch.Tensor:
    """log mean_j exp(w[:, j]) in float64."""
    return torch.logsumexp(w.double(), 1) - math.log(w.shape[1])
