"""A run's budget split between the table encoding and the fit (:class:`PrivacyPlan`).

The encoding spends first, at most ``encoding_share`` of epsilon and of delta (nothing on points,
images, or a table whose columns are all public); the fit gets the rest. The two compose by the
basic composition theorem (epsilons add, deltas add), which holds whatever mechanism the fit uses
(DP-EM, DP-SGD): a model is handed its share as a :class:`PrivacyBudget` and spends at most that."""
from __future__ import annotations

from typing import Any

from .budget import PrivacyBudget, PrivacyRequest


class PrivacyPlan:
    """The budget of one run (``request``), resolved for its rows, and what each part spent."""

    def __init__(self, request: PrivacyRequest):
        self.request = request
        self.total: PrivacyBudget | None = None
        self.encoding: dict[str, Any] = {"epsilon": 0.0, "delta": 0.0}

    def resolve(self, rows: int) -> PrivacyBudget:
        """The whole budget, delta resolved for ``rows`` (the rows of the table as read, held-out
        ones included: the guarantee covers every row the run reads), once."""
        if self.total is None:
            self.total = PrivacyBudget(self.request.epsilon, self.request.delta).for_rows(rows)
        return self.total

    def encoding_budget(self, rows: int) -> PrivacyBudget:
        """The most the encoding may spend: ``encoding_share`` of the budget."""
        total, share = self.resolve(rows), self.request.encoding_share
        return PrivacyBudget(total.epsilon * share, total.delta * share)

    def spent_on_encoding(self, epsilon: float, delta: float, **details: Any) -> None:
        """Record the encoding's spend (its accountant's epsilon at its delta) and how."""
        self.encoding = {"epsilon": float(epsilon), "delta": float(delta), **details}

    def fit_budget(self, rows: int) -> PrivacyBudget:
        """What is left for the fit: the budget less the encoding's spend."""
        total = self.resolve(rows)
        return PrivacyBudget(max(total.epsilon - self.encoding["epsilon"], 1e-12),
                             max(total.delta - self.encoding["delta"], 0.0))

    def report(self, fit: dict[str, Any] | None, rows: int) -> dict[str, Any]:
        """The figures of summary.json: ``privacy_epsilon`` and ``privacy_delta`` spent in all (the
        encoding's and the fit's added), the accountant, and the parts. ``fit``: what the model
        reported (``privacy_epsilon``, ``privacy_delta``, ``privacy_accountant``, ...); without it
        the fit is taken to have spent its whole share (a model that supports privacy spends at
        most that)."""
        share = self.fit_budget(rows)
        fit = dict(fit or {})
        fit_eps = float(fit.pop("privacy_epsilon", share.epsilon))
        fit_delta = float(fit.pop("privacy_delta", share.delta))
        fit_accountant = fit.pop("privacy_accountant", "the model's (not reported: its whole share counted)")
        total = self.resolve(rows)
        return {"privacy_epsilon": self.encoding["epsilon"] + fit_eps, "privacy_delta": self.encoding["delta"] + fit_delta,
                "privacy_accountant": f"basic composition of the encoding ({self.encoding.get('accountant', 'none')}) "
                                      f"and the fit ({fit_accountant})",
                "privacy_budget_epsilon": total.epsilon, "privacy_budget_delta": total.delta,
                "privacy_encoding_epsilon": self.encoding["epsilon"], "privacy_encoding_delta": self.encoding["delta"],
                "privacy_fit_epsilon": fit_eps, "privacy_fit_delta": fit_delta,
                "privacy_fit_budget_epsilon": share.epsilon, "privacy_fit_budget_delta": share.delta,
                **{f"privacy_fit_{k.removeprefix('privacy_')}": v for k, v in fit.items()}}

    def to_json(self) -> dict[str, Any]:
        """config.json's ``privacy``: the request, the resolved budget and the encoding's spend."""
        out = {**self.request.to_json(), "encoding_spent": dict(self.encoding)}
        if self.total is not None:
            out["delta"] = self.total.delta
        return out


def plan_for(options: dict[str, Any] | None, model: str, supported: bool, private_models) -> PrivacyPlan | None:
    """The plan of a run's ``privacy.KEY`` options (None: not private, or ``epsilon = inf``); a
    budget for a model that cannot fit privately is a one-line InputError naming those that can
    (``private_models()``), before any data is read."""
    from ..errors import InputError
    from .budget import privacy_request

    request = privacy_request(options)
    if request is None or not request.private:
        return None
    if not supported:
        can = ", ".join(private_models()) or "none installed"
        raise InputError(f"model {model!r} cannot fit under a privacy budget (privacy.epsilon is set); models "
                         f"that can: {can}")
    return PrivacyPlan(request)
