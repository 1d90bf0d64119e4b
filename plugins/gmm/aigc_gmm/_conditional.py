"""Exact conditional sampling of a Gaussian mixture (``gmm`` on a table, ``--condition``).

The engine gives the conditions in the encoded matrix (:class:`aigc_engine.conditions.Encoded`):
allowed slots of one-hot blocks, and intervals of coordinates (a numeric column's range through
its monotone encoding, a missing indicator above or below 1/2; a point interval is an observed
value). Each component is conditioned in closed form:

- a category (a one-hot block set to the slot's exact one-hot vector) and a point value are
  observed coordinates: the conditional Gaussian of the rest, ``mu_U + S_UO S_OO^-1 (o - mu_O)``,
  ``S_UU - S_UO S_OO^-1 S_OU``, the component's weight times the marginal likelihood
  ``N(o; mu_O, S_OO)``; a set of categories is a mixture over its slots (each combination of
  allowed slots with each component);
- a range is a truncated Gaussian of its coordinate: the first range's mass multiplies the
  component weights (exact), its value is drawn truncated (inverse CDF) and observed; each
  further range is drawn truncated given the ones before, and its mass given them weights the
  row (sampling-importance-resampling from twice the rows asked: exact in the limit).

The rest of each row is drawn from the conditional Gaussian given everything observed. Random
numbers come from torch's global stream (which the engine seeds).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.special import ndtr, ndtri

__all__ = ["draw_conditioned", "full_covariances", "MAX_COMBINATIONS"]

#: Combinations of allowed categories enumerated at most; past them the later sets of
#: categories are left to the engine's rejection.
MAX_COMBINATIONS = 256


def full_covariances(state: dict) -> np.ndarray:
    """``[K, D, D]`` covariances of a mixture's ``fitted_state`` whatever its covariance type."""
    cov, means = state["covariances"].double().numpy(), state["means"].double().numpy()
    k, d = means.shape
    kind = state.get("covariance_type", "full")
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov.reshape(k, 1, 1) * np.eye(d)


def draw_conditioned(states: list[dict], n: int, where, class_weights: torch.Tensor | None = None):
    """``(rows [n, D] float32, labels or None)``: ``n`` rows of the mixture ``states[0]``, or of
    a mixture per class (``class_weights``: the rates of the classes allowed, each class then
    weighted by the probability its mixture gives the conditions), under ``where``; None when
    the mixtures give the conditions no probability."""
    plans = [_plan(state, where) for state in (states if class_weights is not None else states[:1])]
    if class_weights is None:
        return (_draw(plans[0], n), None) if plans[0] is not None else None
    with np.errstate(divide="ignore"):
        logp = np.log(class_weights.double().numpy()) + np.array(
            [np.logaddexp.reduce(p[1]) if p is not None else -np.inf for p in plans])
    if not np.isfinite(logp).any():
        return None
    labels = torch.multinomial(torch.from_numpy(np.exp(logp - logp.max())), n, replacement=True)
    out = torch.empty(n, len(states[0]["means"][0]), dtype=torch.float32)
    for c in labels.unique().tolist():
        at = (labels == c).nonzero().flatten()
        out[at] = _draw(plans[c], len(at))
    return out, labels


def _observations(where, d: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each combination of allowed categories (and the point values) as observed coordinates
    and their values."""
    slots = where.slots
    combos, total = [], 1
    for start, stop, allowed in slots:
        if total * len(allowed) > MAX_COMBINATIONS:
            break
        total *= len(allowed)
        combos.append([(start, stop, a) for a in allowed])
    points = [(at, lo) for at, (lo, hi) in where.ranges.items() if lo == hi]
    out = []
    for combo in itertools.product(*combos):
        index, values = [], []
        for start, stop, a in combo:
            index += range(start, stop)
            values += [1.0 if i == a else 0.0 for i in range(stop - start)]
        index += [at for at, _ in points]
        values += [v for _, v in points]
        out.append((np.asarray(index, dtype=np.int64), np.asarray(values, dtype=np.float64)))
    return out


def _gaussian_given(mean: np.ndarray, cov: np.ndarray, obs: np.ndarray, values: np.ndarray):
    """The conditional ``(mean [.., U], cov [U, U], U)`` of a Gaussian given coordinates ``obs``
    at ``values`` (``[m, O]`` or ``[O]``), and the log marginal likelihood of the values."""
    d = len(mean)
    rest = np.setdiff1d(np.arange(d), obs)
    if not len(obs):
        return np.broadcast_to(mean, values.shape[:-1] + (d,)), cov, rest, np.zeros(values.shape[:-1])
    s_oo, s_uo = cov[np.ix_(obs, obs)], cov[np.ix_(rest, obs)]
    gain = np.linalg.solve(s_oo, s_uo.T).T  # S_UO S_OO^-1
    diff = values - mean[obs]
    cond_mean = mean[rest] + diff @ gain.T
    cond_cov = cov[np.ix_(rest, rest)] - gain @ s_uo.T
    chol = np.linalg.cholesky(s_oo)
    z = np.linalg.solve(chol, diff[..., None])[..., 0] if diff.ndim > 1 else np.linalg.solve(chol, diff)
    loglik = -0.5 * (z * z).sum(-1) - np.log(np.diag(chol)).sum() - 0.5 * len(obs) * np.log(2 * np.pi)
    return cond_mean, 0.5 * (cond_cov + cond_cov.T), rest, loglik


def _truncated(mean: np.ndarray, sd: float, lo: float, hi: float, u: np.ndarray):
    """Draws of ``N(mean, sd^2)`` truncated to ``[lo, hi]`` by the inverse CDF of uniforms ``u``,
    and the log mass of the interval (-inf: none), both computed on the side of the mean where
    the normal CDF keeps its precision (the lower tail)."""
    a, b = (lo - mean) / sd, (hi - mean) / sd
    flip = a > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    pa, pb = ndtr(a), ndtr(b)
    z = np.clip(ndtri(np.clip(pa + u * (pb - pa), 1e-300, 1.0)), a, b)
    with np.errstate(divide="ignore"):
        mass = np.log(np.maximum(pb - pa, 0.0))
    return mean + sd * np.where(flip, -z, z), mass


def _plan(state: dict, where):
    """The groups (a component with a combination of observed values) of one mixture under
    ``where`` and their log weights (the component's weight times the likelihood of the
    observed values and the mass of the first range); None when none has any."""
    weights, means = state["weights"].double().numpy(), state["means"].double().numpy()
    covs = full_covariances(state)
    ranges = [(at, lo, hi) for at, (lo, hi) in sorted(where.ranges.items()) if lo < hi]
    groups, logw = [], []
    for obs, values in _observations(where, means.shape[1]):
        for k in range(len(weights)):
            mean, cov, rest, loglik = _gaussian_given(means[k], covs[k], obs, values)
            mass = 0.0
            if ranges:
                at = int(np.searchsorted(rest, ranges[0][0]))
                mass = float(_truncated(mean[at], np.sqrt(cov[at, at]), ranges[0][1], ranges[0][2], 0.5)[1])
            groups.append((means[k], covs[k], obs, values))
            with np.errstate(divide="ignore"):
                logw.append(np.log(weights[k]) + loglik + mass)
    logw = np.asarray(logw, dtype=np.float64)
    return (groups, logw, ranges) if np.isfinite(logw).any() else None


def _draw(plan, n: int) -> torch.Tensor:
    """``n`` rows of a plan: each row's group drawn by weight, then its values."""
    groups, logw, ranges = plan
    p = torch.from_numpy(np.exp(logw - logw.max()))
    m = n * (2 if len(ranges) > 1 else 1)
    pick = torch.multinomial(p / p.sum(), m, replacement=True).numpy()
    rows, logr = np.empty((m, len(groups[0][0]))), np.zeros(m)
    for g in np.unique(pick):
        at = np.flatnonzero(pick == g)
        rows[at], logr[at] = _draw_group(*groups[g], ranges, len(at))
    if m > n:  # importance weights of the ranges after the first
        w = torch.from_numpy(np.exp(logr - logr.max()))
        rows = rows[torch.multinomial(w / w.sum(), n, replacement=True).numpy()]
    return torch.from_numpy(rows).float()


def _draw_group(mean, cov, obs, values, ranges, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows of one component under one combination of observed values: the ranges drawn
    in turn (truncated, given the ones before), then the rest; and each row's log weight (the
    masses of the ranges after the first)."""
    d = len(mean)
    obs, vals = list(obs), np.broadcast_to(values, (m, len(values))).copy()
    logr = np.zeros(m)
    for i, (at, lo, hi) in enumerate(ranges):
        cm, cc, rest, _ = _gaussian_given(mean, cov, np.asarray(obs, dtype=np.int64), vals)
        j = int(np.searchsorted(rest, at))
        u = torch.rand(m, dtype=torch.float64).numpy()
        x, mass = _truncated(cm[:, j], np.sqrt(max(cc[j, j], 1e-300)), lo, hi, u)
        if i:
            logr += mass
        obs.append(at)
        vals = np.concatenate([vals, x[:, None]], axis=1)
    obs = np.asarray(obs, dtype=np.int64)
    cm, cc, rest, _ = _gaussian_given(mean, cov, obs, vals)
    rows = np.empty((m, d))
    rows[:, obs] = vals
    if len(rest):
        chol = np.linalg.cholesky(cc + 1e-12 * np.eye(len(rest)))
        z = torch.randn(m, len(rest), dtype=torch.float64).numpy()
        rows[:, rest] = cm + z @ chol.T
    return rows, logr
