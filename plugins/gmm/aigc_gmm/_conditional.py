"""Exact conditional sampling of a Gaussian mixture (``gmm`` on a table, ``--condition``).

The engine gives the conditions in the encoded matrix (:class:`aigc_engine.conditions.Encoded`):
allowed slots of one-hot blocks, and intervals of coordinates (a numeric column's range through
its monotone encoding, a missing indicator above or below 1/2; a point interval is an observed
value). Each component is conditioned on them:

- a point value is an observed coordinate: the conditional Gaussian of the rest,
  ``mu_U + S_UO S_OO^-1 (o - mu_O)``, ``S_UU - S_UO S_OO^-1 S_OU``, the component's weight times
  the marginal likelihood ``N(o; mu_O, S_OO)``;
- a category (or a set of them) is the event the rows decode to it: a one-hot block is decoded
  by its argmax, so the event is the region of the block's coordinates where an allowed slot is
  the largest. Each component's weight is multiplied by the probability it gives that region
  (Monte Carlo: draws of the component's marginal on the blocks conditioned on, which are few
  coordinates, until :data:`EVENT_HITS` of them fall in the region, within a bound on the
  draws: :data:`EVENT_DRAWS`, :data:`EVENT_VALUES`), and each row's block coordinates are
  draws of that marginal that fall in the region (the same rejection, bounded by
  :data:`ROW_VALUES` per component, then drawn again from the ones found); the rest of the
  row is the conditional Gaussian given them. Where no component of any class's mixture has a
  draw in the region (the mixture never decodes to the category), the block is observed at its
  exact one-hot vector instead (a set: a mixture over its slots);
- a range is a truncated Gaussian of its coordinate: the first range's mass multiplies the
  component weights (exact; with categories, the mean over the block draws in the region of its
  mass given them, and the block draws are picked in proportion to it), its value is drawn
  truncated (inverse CDF) and observed; each further range is drawn truncated given the ones
  before, and its mass given them weights the row (sampling-importance-resampling from twice
  the rows asked: exact in the limit).

The rest of each row is drawn from the conditional Gaussian given everything observed. Random
numbers come from torch's global stream (which the engine seeds).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import logsumexp, ndtr, ndtri

__all__ = ["draw_conditioned", "full_covariances", "MAX_COMBINATIONS", "EVENT_HITS", "EVENT_DRAWS", "EVENT_VALUES",
           "ROW_VALUES"]

#: Combinations of allowed categories enumerated at most when blocks are observed at their
#: one-hot vectors (the fallback); past them the later sets are left to the engine's rejection.
MAX_COMBINATIONS = 256
#: A component's probability of the categories' region: Monte Carlo until this many draws fall
#: in it (about 3% relative error), within :data:`EVENT_DRAWS` draws and, for a mixture, within
#: :data:`EVENT_VALUES` block coordinates drawn over all its components (a wide block or many
#: components draw fewer each; never fewer than 2,048).
EVENT_HITS = 1024
EVENT_DRAWS = 1 << 17
EVENT_VALUES = 1 << 22
#: Block coordinates drawn at most per component when its rows need more draws in the region
#: than the estimate found; past them the rows reuse the draws found.
ROW_VALUES = 1 << 22
_CHUNK = 1 << 15


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
    states = states if class_weights is not None else states[:1]
    plans = [_plan(state, where) for state in states]
    if all(p is None for p in plans) and where.slots:  # no component's draws decode to the categories
        plans = [_plan(state, where, corner=True) for state in states]
    if class_weights is None:
        return (_draw(plans[0], n), None) if plans[0] is not None else None
    with np.errstate(divide="ignore"):
        logp = np.log(class_weights.double().numpy()) + np.array(
            [logsumexp(p.logw) if p is not None else -np.inf for p in plans])
    if not np.isfinite(logp).any():
        return None
    labels = torch.multinomial(torch.from_numpy(np.exp(logp - logp.max())), n, replacement=True)
    out = torch.empty(n, len(states[0]["means"][0]), dtype=torch.float32)
    for c in labels.unique().tolist():
        at = (labels == c).nonzero().flatten()
        out[at] = _draw(plans[c], len(at))
    return out, labels


@dataclass
class _Group:
    """One component under one combination of observed values: ``obs`` at ``values``; with
    categories conditioned as an event, ``blocks`` (the block coordinates, the event's blocks
    in them) and ``pool`` (draws of the blocks in the event, ``logm`` the first range's log mass
    given each, ``drawn``: how many draws found them)."""

    mean: np.ndarray
    cov: np.ndarray
    obs: np.ndarray
    values: np.ndarray
    blocks: tuple | None = None
    pool: np.ndarray | None = None
    logm: np.ndarray | None = None
    drawn: int = 0


@dataclass
class _Plan:
    groups: list
    logw: np.ndarray
    ranges: list


def _observations(where, corner: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The point values as observed coordinates and their values; with ``corner`` each
    combination of allowed categories too (their exact one-hot vectors)."""
    combos, total = [], 1
    for start, stop, allowed in (where.slots if corner else []):
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


def _in_event(b: np.ndarray, blocks) -> np.ndarray:
    """Whether each row of block coordinates ``b`` decodes to an allowed slot in every block
    (``blocks``: ``(offset, size, allowed)`` in ``b``'s columns)."""
    ok = np.ones(len(b), dtype=bool)
    for offset, size, allowed in blocks:
        ok &= np.isin(b[:, offset:offset + size].argmax(axis=1), allowed)
    return ok


def _event_draws(mean: np.ndarray, cov: np.ndarray, blocks, hits: int, most: int):
    """Draws of ``N(mean, cov)`` (the blocks' marginal) that fall in the event, until ``hits``
    of them or ``most`` draws; and how many were drawn. Drawn in float32 (the rows are)."""
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mean))).T.astype(np.float32)
    kept, found, drawn = [], 0, 0
    while found < hits and drawn < most:
        rate = max(found / drawn, 1.0 / most) if drawn else 1.0
        m = int(min(max((hits - found) / rate * 1.2 + 64, 1024), _CHUNK, most - drawn))
        b = torch.randn(m, len(mean)).numpy() @ chol
        b = b[_in_event(b + mean.astype(np.float32), blocks)].astype(np.float64) + mean
        kept.append(b)
        found, drawn = found + len(b), drawn + m
    return np.concatenate(kept) if kept else np.empty((0, len(mean))), drawn


def _plan(state: dict, where, corner: bool = False) -> _Plan | None:
    """The groups (a component with a combination of observed values) of one mixture under
    ``where`` and their log weights (the component's weight times the likelihood of the
    observed values, the probability of the categories' region and the mass of the first
    range); None when none has any. ``corner``: the blocks observed at their one-hot vectors
    (what :func:`draw_conditioned` falls back to where no mixture has a draw in the categories'
    region)."""
    weights, means = state["weights"].double().numpy(), state["means"].double().numpy()
    covs = full_covariances(state)
    ranges = [(at, lo, hi) for at, (lo, hi) in sorted(where.ranges.items()) if lo < hi]
    event = not corner and bool(where.slots)
    if event:
        index = np.concatenate([np.arange(start, stop) for start, stop, _ in where.slots])
        offsets = np.cumsum([0] + [stop - start for start, stop, _ in where.slots])
        blocks = (index, [(int(o), stop - start, list(allowed))
                          for o, (start, stop, allowed) in zip(offsets, where.slots)])
        most = min(EVENT_DRAWS, max(2048, EVENT_VALUES // (len(weights) * len(index))))
    groups, logw = [], []
    for obs, values in _observations(where, corner):
        for k in range(len(weights)):
            mean, cov, rest, loglik = _gaussian_given(means[k], covs[k], obs, values)
            group, mass = _Group(means[k], covs[k], obs, values), 0.0
            if event:
                at = np.searchsorted(rest, blocks[0])
                group.blocks = blocks
                group.pool, group.drawn = _event_draws(mean[at], cov[np.ix_(at, at)], blocks[1], EVENT_HITS, most)
                group.logm = np.zeros(len(group.pool))
                if ranges and len(group.pool):
                    group.logm = _first_mass(group, ranges[0])
                with np.errstate(divide="ignore"):
                    mass = logsumexp(group.logm) - np.log(group.drawn) if len(group.pool) else -np.inf
            elif ranges:
                at = int(np.searchsorted(rest, ranges[0][0]))
                mass = float(_truncated(mean[at], np.sqrt(cov[at, at]), ranges[0][1], ranges[0][2], 0.5)[1])
            groups.append(group)
            with np.errstate(divide="ignore"):
                logw.append(np.log(weights[k]) + loglik + mass)
    logw = np.asarray(logw, dtype=np.float64)
    return _Plan(groups, logw, ranges) if np.isfinite(logw).any() else None


def _first_mass(group: _Group, first) -> np.ndarray:
    """The log mass of the first range given the observed values and each block draw."""
    at, lo, hi = first
    obs = np.concatenate([group.obs, group.blocks[0]])
    vals = np.concatenate([np.broadcast_to(group.values, (len(group.pool), len(group.values))), group.pool], 1)
    cm, cc, rest, _ = _gaussian_given(group.mean, group.cov, obs, vals)
    j = int(np.searchsorted(rest, at))
    return _truncated(cm[:, j], np.sqrt(max(cc[j, j], 1e-300)), lo, hi, np.full(len(vals), 0.5))[1]


def _draw(plan: _Plan, n: int) -> torch.Tensor:
    """``n`` rows of a plan: each row's group drawn by weight, then its values."""
    groups, logw, ranges = plan.groups, plan.logw, plan.ranges
    p = torch.from_numpy(np.exp(logw - logw.max()))
    m = n * (2 if len(ranges) > 1 else 1)
    pick = torch.multinomial(p / p.sum(), m, replacement=True).numpy()
    rows, logr = np.empty((m, len(groups[0].mean))), np.zeros(m)
    for g in np.unique(pick):
        at = np.flatnonzero(pick == g)
        rows[at], logr[at] = _draw_group(groups[g], ranges, len(at))
    if m > n:  # importance weights of the ranges after the first
        w = torch.from_numpy(np.exp(logr - logr.max()))
        rows = rows[torch.multinomial(w / w.sum(), n, replacement=True).numpy()]
    return torch.from_numpy(rows).float()


def _block_rows(group: _Group, ranges, m: int) -> np.ndarray:
    """``m`` block draws in the categories' region for a group's rows: without a range, distinct
    draws (more are drawn while the estimate's are too few, within :data:`ROW_VALUES`); with
    one, picked in proportion to the first range's mass given them from four times ``m``."""
    want = 4 * m if ranges else m
    pool, logm = group.pool, group.logm
    if len(pool) < want:
        at = np.searchsorted(np.setdiff1d(np.arange(len(group.mean)), group.obs), group.blocks[0])
        mean, cov, _, _ = _gaussian_given(group.mean, group.cov, group.obs, group.values)
        more, _ = _event_draws(mean[at], cov[np.ix_(at, at)], group.blocks[1], want - len(pool),
                               max(ROW_VALUES // len(group.blocks[0]) - group.drawn, 0))
        if len(more):
            extra = _Group(group.mean, group.cov, group.obs, group.values, group.blocks, more)
            pool = np.concatenate([pool, more])
            logm = np.concatenate([logm, _first_mass(extra, ranges[0]) if ranges else np.zeros(len(more))])
    if not ranges and len(pool) >= m:
        return pool[torch.randperm(len(pool))[:m].numpy()]
    w = torch.from_numpy(np.exp(logm - logm.max()))
    return pool[torch.multinomial(w / w.sum(), m, replacement=True).numpy()]


def _draw_group(group: _Group, ranges, m: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows of one group: the blocks in the categories' region, the ranges drawn in turn
    (truncated, given what is drawn before), then the rest; and each row's log weight (the
    masses of the ranges after the first)."""
    d = len(group.mean)
    obs, vals = list(group.obs), np.broadcast_to(group.values, (m, len(group.values))).copy()
    if group.blocks is not None:
        obs += group.blocks[0].tolist()
        vals = np.concatenate([vals, _block_rows(group, ranges, m)], axis=1)
    logr = np.zeros(m)
    for i, (at, lo, hi) in enumerate(ranges):
        cm, cc, rest, _ = _gaussian_given(group.mean, group.cov, np.asarray(obs, dtype=np.int64), vals)
        j = int(np.searchsorted(rest, at))
        u = torch.rand(m, dtype=torch.float64).numpy()
        x, mass = _truncated(cm[:, j], np.sqrt(max(cc[j, j], 1e-300)), lo, hi, u)
        if i:
            logr += mass
        obs.append(at)
        vals = np.concatenate([vals, x[:, None]], axis=1)
    obs = np.asarray(obs, dtype=np.int64)
    cm, cc, rest, _ = _gaussian_given(group.mean, group.cov, obs, vals)
    rows = np.empty((m, d))
    rows[:, obs] = vals
    if len(rest):
        chol = np.linalg.cholesky(cc + 1e-12 * np.eye(len(rest)))
        z = torch.randn(m, len(rest), dtype=torch.float64).numpy()
        rows[:, rest] = cm + z @ chol.T
    return rows, logr
