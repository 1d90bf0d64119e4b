"""What the Gaussian mixtures share whatever estimates their parameters (EM or variational):
the initialisation from the data (scikit-learn's ``init_params``: k-means, k-means++, random
responsibilities, random rows) and sampling.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._data import Source, empty_stats
from ._gaussian import parameters_from_stats, sample_from
from ._kmeans import hard_resp, kmeans, nearest
from ._passes import resp_pass

_INIT_SAMPLE = 20000  # rows of streamed data that k-means initialises on


class GaussianComponents:
    """The parts of a mixture of Gaussians that do not depend on how its parameters are
    estimated (EM or variational): the initial responsibilities from the data (scikit-learn's
    ``init_params``), and sampling. The estimator provides ``n_components``,
    ``covariance_type``, ``init_params``, ``reg_covar``, ``random_state`` and
    ``_gaussian_params() -> Params`` (the fitted weights, means and covariances)."""

    def _initial_from_data(self, source: Source, full: Source, rs, all_reduce, sample_weight=None):
        """``(nk, means, covariances, n)`` from the initial responsibilities, as scikit-learn's
        ``_initialize`` computes them (its weights are ``nk / n``; ``n`` is the number of rows,
        or the sum of their weights). With ``sample_weight`` (float64 ``[n]``) in-memory k-means
        and k-means++ are weighted (scikit-learn's ``sample_weight``) and so is every pass."""
        n, w = full.n_samples, sample_weight
        if self.init_params in ("random_from_data", "k-means++"):
            return self._initial_from_rows(self._initial_rows(full, rs, w), source, n, all_reduce, w)
        if self.init_params == "random":
            return self._initial_random(source, n, rs, all_reduce, w)
        resp_fn = self._kmeans_resp(source, full, rs, w)
        means1 = self._first_moments(source, resp_fn, all_reduce, w)
        return self._from_second_moments(source, resp_fn, means1, n, all_reduce, w)

    def _initial_rows(self, full: Source, rs, w: torch.Tensor | None) -> torch.Tensor:
        """The K rows that ``random_from_data`` or ``k-means++`` picks (``[K, D]``)."""
        K = self.n_components
        if self.init_params == "random_from_data":
            return full.take(rs.choice(full.n_samples, size=K, replace=False))
        if self._in_memory_init:
            from sklearn.cluster import kmeans_plusplus

            X_np = full.data.detach().cpu().numpy() if isinstance(full.data, torch.Tensor) else full.data
            _, idx = kmeans_plusplus(np.asarray(X_np), K, random_state=rs,
                                     sample_weight=None if w is None else w.cpu().numpy())
            return full.take(idx)
        return kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max), init="k-means++")

    def _initial_from_rows(self, rows: torch.Tensor, source: Source, n: int, all_reduce, w):
        """``_initial_from_data`` of one-hot responsibilities on K ``rows``: only those rows
        contribute, each centred on itself (table ``[1 | 0 | 0]``); tied: scikit-learn's ``(X^T X
        - sum nk m m^T) / sum nk`` over *all* rows, so the scatter is around zero."""
        K, cov_type, D = self.n_components, self.covariance_type, source.n_features
        rows = rows.to(source.dtype)
        zero = torch.zeros(D, dtype=source.dtype, device=source.device)
        stats = empty_stats(K, D, cov_type, rows, zero)
        stats.table[:, 0] = 1
        if cov_type == "tied":  # rows are in every process's hands: only the scatter is all-reduced
            for offset, x in source.chunks():
                xw = x.double() if w is None else x.double() * w[offset:offset + len(x), None]
                stats.scatter += xw.T @ x.double()
            if all_reduce is not None:
                all_reduce(stats.scatter)
        nk, means, cov = parameters_from_stats(stats, cov_type, self.reg_covar, self._eps, source.origin)
        return nk, means, cov, self._total_weight(n, w, all_reduce)

    def _kmeans_resp(self, source: Source, full: Source, rs, w: torch.Tensor | None):
        """``resp_fn(offset, x) -> [n, K]``: the one-hot responsibilities of k-means' clusters
        (scikit-learn's ``KMeans`` in memory, torch k-means on a sample of streamed data)."""
        K = self.n_components
        if self._in_memory_init:
            from sklearn.cluster import KMeans

            X_np = full.data.detach().cpu().numpy()
            w_np = None if w is None else w.cpu().numpy()
            labels = KMeans(n_clusters=K, n_init=1, random_state=rs).fit(X_np, sample_weight=w_np).labels_
            labels_t = torch.as_tensor(labels, device=source.device)
            return lambda offset, x: hard_resp(labels_t[offset:offset + len(x)], K, x.dtype)
        centres = kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max))
        centres = centres.to(source.dtype)
        return lambda offset, x: hard_resp(nearest(x, centres), K, x.dtype)

    def _initial_random(self, source: Source, n: int, rs, all_reduce, w):
        """``init_params="random"``: the same stream of uniforms as scikit-learn, chunk by chunk
        (a shard skips the rows before it), drawn again for the second pass; ``rs`` is left
        where a one-process fit leaves it."""
        K = self.n_components
        state = rs.get_state()
        skip = getattr(source, "global_offset", 0)

        def make():
            rs.set_state(state)
            for start in range(0, skip, 65536):
                rs.uniform(size=(min(65536, skip - start), K))

            def resp_fn(offset, x):
                r = torch.as_tensor(rs.uniform(size=(len(x), K)), device=x.device).to(x.dtype)
                return r / r.sum(1, keepdim=True)
            return resp_fn
        means1 = self._first_moments(source, make(), all_reduce, w)
        end_state = rs.get_state()
        out = self._from_second_moments(source, make(), means1, n, all_reduce, w)
        if source.n_samples == n:
            rs.set_state(end_state)
        else:  # a shard: leave random_state where a one-process fit leaves it
            rs.set_state(state)
            for start in range(0, n, 65536):
                rs.uniform(size=(min(65536, n - start), K))
        return out

    def _first_moments(self, source: Source, resp_fn, all_reduce, w) -> torch.Tensor:
        """The components' means under ``resp_fn`` (the first pass: the shifts of the second),
        in the rows' frame and dtype."""
        D = source.n_features
        zero = torch.zeros(D, dtype=source.dtype, device=source.device)
        st1 = resp_pass(source, resp_fn, zero, zero, self.n_components, "spherical", all_reduce, w)
        return (st1.table[:, 1:1 + D] / (st1.table[:, :1] + 10 * self._eps)).to(source.dtype)

    def _from_second_moments(self, source: Source, resp_fn, means1: torch.Tensor, n: int, all_reduce, w):
        """The second pass (each component centred on its first-pass mean ``means1``) and the
        ``(nk, means, covariances, n)`` of its statistics."""
        st2 = resp_pass(source, resp_fn, means1, means1.mean(0), self.n_components, self.covariance_type,
                        all_reduce, w)
        nk, means, cov = parameters_from_stats(st2, self.covariance_type, self.reg_covar, self._eps, source.origin)
        return nk, means, cov, (n if w is None else float(st2.n))

    @staticmethod
    def _total_weight(n: int, w: torch.Tensor | None, all_reduce) -> float:
        """The number of rows ``n``, or the sum of all processes' sample weights."""
        if w is None:
            return n
        total = w.sum().reshape(1).clone()
        if all_reduce is not None:
            all_reduce(total)
        return float(total)

    def _init_sample(self, full: Source, rs) -> torch.Tensor:
        n = full.n_samples
        if n <= _INIT_SAMPLE:
            return torch.cat([x for _, x in full.chunks()])
        idx = np.sort(rs.choice(n, size=_INIT_SAMPLE, replace=False))
        return full.take(idx)

    # ------------------------------------------------------------------------------------
    # sampling
    def sample(self, n_samples=1):
        """Draw samples and their component labels (grouped by component, like scikit-learn)."""
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError("Invalid value for 'n_samples': %d . The sampling requires at "
                             "least one sample." % (self.n_components))
        p = self._gaussian_params()
        D = p.means.shape[1]
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, p.weights.cpu().numpy())
        z = torch.as_tensor(rng.standard_normal(size=(n_samples, D)), device=p.means.device)
        labels = torch.repeat_interleave(torch.arange(len(counts), device=p.means.device),
                                         torch.as_tensor(counts, device=p.means.device))
        X = sample_from(p, self.covariance_type, labels, z)
        out = self._out_fmt
        if out[0] == "numpy":
            return X.cpu().numpy(), labels.cpu().numpy()
        return X.to(device=out[1], dtype=self._dtype), labels.to(out[1])

    def draw(self, n_samples: int, generator: torch.Generator | None = None):
        """``(X, labels)``: ``n_samples`` rows drawn with torch's random stream (``generator``, or
        the global one the engine seeds), each row's component drawn from the weights, in draw
        order (``sample`` draws from ``random_state`` and groups rows by component, as
        scikit-learn). Torch tensors on the fit's device, ``X [n, D]`` in the compute dtype."""
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(f"the number of samples must be >= 1, got {n_samples}")
        p = self._gaussian_params()
        dev = p.means.device
        labels = torch.multinomial(p.weights.cpu(), n_samples, replacement=True, generator=generator).to(dev)
        z = torch.randn(n_samples, p.means.shape[1], dtype=torch.float64, device="cpu", generator=generator).to(dev)
        return sample_from(p, self.covariance_type, labels, z).to(self._dtype), labels
