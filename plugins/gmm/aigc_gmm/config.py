"""The ``gmm`` model's hyper-parameters. A light module (no torch, no scikit-learn): the CLI
reads it to list the model's options and to check ``--set`` values before a run starts."""
from __future__ import annotations

import dataclasses
import typing
from typing import Literal

CovarianceType = Literal["full", "tied", "diag", "spherical"]
InitParams = Literal["kmeans", "k-means++", "random", "random_from_data"]
DType = Literal["float32", "float64"]

COVARIANCE_TYPES: tuple[str, ...] = typing.get_args(CovarianceType)
DTYPES: tuple[str, ...] = typing.get_args(DType)


@dataclasses.dataclass
class GMMConfig:
    """Hyper-parameters of the ``gmm`` model (scikit-learn's names and meanings)."""
    n_components: int = 8
    covariance_type: CovarianceType = "full"
    tol: float = 1e-3
    reg_covar: float = 1e-6
    max_iter: int = 100
    n_init: int = 1
    init_params: InitParams = "kmeans"
    dtype: DType = "float32"
    chunk_size: int = 65536
    checkpoint_seconds: float = 1.0  # the EM state is checkpointed after the first iteration this long after the last
