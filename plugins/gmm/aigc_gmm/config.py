"""The ``gmm`` model's hyper-parameters. A light module (no torch, no scikit-learn): the CLI
reads it to list the model's options and to check ``--set`` values before a run starts."""
from __future__ import annotations

import dataclasses
import typing
from typing import Literal

from aigc_engine.config import option

CovarianceType = Literal["full", "tied", "diag", "spherical"]
InitParams = Literal["kmeans", "k-means++", "random", "random_from_data"]
DType = Literal["float32", "float64"]
FitMode = Literal["batch", "online"]
Conditional = Literal["auto", "true", "false"]
Missing = Literal["indicator", "marginalize"]

COVARIANCE_TYPES: tuple[str, ...] = typing.get_args(CovarianceType)
# Per kind of data (the fields left at None): scikit-learn's reg_covar for points and images; on
# a table's standardised columns a floor of 1% of a column's variance, so that a class of a few
# dozen rows in a dozen columns gets no near-singular component sitting on its rows (on wine,
# 1e-6 put synthetic rows closer to the training rows than held-out rows are: DCR ratio 0.7).
DEFAULTS: dict[str, dict] = {"points": {"reg_covar": 1e-6}, "images": {"reg_covar": 1e-6},
                             "tables": {"reg_covar": 1e-2}}
DTYPES: tuple[str, ...] = typing.get_args(DType)
PrivacyAccountant = Literal["pld", "rdp"]


@dataclasses.dataclass
class GMMConfig:
    """Hyper-parameters of the ``gmm`` model (scikit-learn's names and meanings)."""
    n_components: int = 8
    covariance_type: CovarianceType = "full"
    tol: float = 1e-3
    reg_covar: float | None = option(None, help="added to the diagonal of each covariance", ge=0)
    max_iter: int = 100
    n_init: int = 1
    init_params: InitParams = "kmeans"
    dtype: DType = "float32"
    chunk_size: int = 65536
    checkpoint_seconds: float = 1.0  # the EM state is checkpointed after the first iteration this long after the last
    fit: FitMode = "batch"  # "online": stepwise EM over batches of batch_size rows (GaussianMixture.partial_fit)
    batch_size: int = 4096
    epochs: int = 1  # fit=online: passes over the data
    step_exponent: float = 0.6  # fit=online: step size (t + 2)^-step_exponent, in (0.5, 1]
    # one mixture per class (then --condition works): auto on a table with a label column, true
    # on any labelled data, false never (images stay one mixture under auto)
    conditional: Conditional = "auto"
    # a table (and each class): the number of components in 1..n_components that BIC prefers,
    # searched on a random subsample of at most select_rows rows, the chosen mixture then fitted
    # on at most fit_rows rows from the search's parameters (None: all rows); EM's cost grows as
    # rows x components x width^2, so a wide table of a million rows fits in minutes
    select_rows: int | None = option(10000, help="rows of a table the BIC search over K fits (None: all)", ge=2)
    fit_rows: int | None = option(50000, help="rows of a table the chosen mixture fits (None: all)", ge=2)
    # a table's missing numeric values: its 0/1 indicator columns modelled as data (indicator), or
    # left out of each row's likelihood (marginalize: GaussianMixture(missing="marginalize"), the
    # indicators dropped; samples are complete rows)
    missing: Missing = "indicator"
    # differential privacy (docs/privacy.md): a finite epsilon fits by DP-EM (gmm only), spending
    # at most (epsilon, delta) on the fit and the class rates; the encoding is not private yet.
    # Later: one ``privacy.epsilon`` for every model, read by the engine's config.
    privacy_epsilon: float | None = option(None, help="DP budget of the fit, gmm only (None: not private)", gt=0)
    privacy_delta: float | None = option(None, help="DP delta (None: rows ** -1.1)", ge=0, lt=1)
    privacy_clip: float | None = option(None, help="L2 bound of the encoded rows (None: sqrt(width))", gt=0)
    privacy_iterations: int = option(10, help="DP-EM iterations (each spends budget)", ge=1)
    privacy_accountant: PrivacyAccountant = "pld"


WeightPrior = Literal["dirichlet_process", "dirichlet_distribution"]
WEIGHT_PRIORS: tuple[str, ...] = typing.get_args(WeightPrior)


@dataclasses.dataclass
class BGMMConfig(GMMConfig):
    """Hyper-parameters of the ``bgmm`` model: ``gmm``'s and the priors of scikit-learn's
    ``BayesianGaussianMixture`` (0 stands for its default, None: ``1 / n_components``
    concentration, mean precision 1, ``D`` degrees of freedom, the data's covariance).
    ``n_components`` is an upper bound: components whose weight ends below ``prune_threshold``
    are reported as pruned."""
    weight_concentration_prior_type: WeightPrior = "dirichlet_process"
    weight_concentration_prior: float = 0.0
    mean_precision_prior: float = 0.0
    degrees_of_freedom_prior: float = 0.0
    covariance_prior: float = 0.0  # a scalar: spherical only (else the data's covariance)
    prune_threshold: float = 1e-3
