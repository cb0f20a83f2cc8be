r"""Bandit off-policy estimators: DM, IPS, SNIPS, DR, SNDR, Switch-DR and DRos.

Notation (as in Open Bandit Pipeline, ``obp/ope/estimators.py``): ``n`` logged decisions
``(x_i, a_i, r_i)`` with logging propensities ``pi_b(a_i | x_i)``; the target policy
``pi_e``; importance weights ``w_i = pi_e(a_i | x_i) / pi_b(a_i | x_i)``; a reward model
``q_hat(x, a)`` and its value under the target ``q_hat(x, pi_e) = sum_a pi_e(a | x) q_hat(x, a)``;
``E_n[.]`` is the mean over logged rows. In multi-slot logs every ``pi`` and ``q_hat`` also
conditions on the row's position, and the value is the mean over rows, as obp does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from campaignrl._checks import check_scalar
from campaignrl.ope.base import BaseOffPolicyEstimator, OPEInputs
from campaignrl.ope.intervals import RoundTerms

__all__ = [
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "SNDR",
    "SNIPS",
    "DRos",
    "SwitchDR",
]


def _model_inputs(inputs: OPEInputs) -> tuple[np.ndarray, np.ndarray]:
    # The base class fills both whenever `needs_reward_model` is set.
    if inputs.q_factual is None or inputs.q_expected is None:  # pragma: no cover
        raise RuntimeError("reward model predictions missing")
    return inputs.q_factual, inputs.q_expected


@dataclass(frozen=True)
class DM(BaseOffPolicyEstimator):
    r"""Direct Method: the reward model's value of the target policy.

    .. math::
        \hat{V}_{\mathrm{DM}} = E_n[ \sum_a \pi_e(a \mid x_i) \hat{q}(x_i, a) ]

    Unbiased only if the reward model is; no importance weights, hence low variance. The
    interval treats ``q_hat`` as fixed (it ignores the model's own estimation error).

    Reference: Beygelzimer & Langford, "The Offset Tree for Learning with Partial Labels",
    2009; obp ``DirectMethod``.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> DM().estimate_policy_value(data, np.array([1.0, 0.0]),
        ...                            estimated_rewards=np.array([[0.8, 0.1], [0.6, 0.2]]))
        0.7
    """

    estimator_name: ClassVar[str] = "dm"
    needs_reward_model: ClassVar[bool] = True

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        _, q_expected = _model_inputs(inputs)
        return RoundTerms(q_expected)


@dataclass(frozen=True)
class IPS(BaseOffPolicyEstimator):
    r"""Inverse propensity scoring (IPW), optionally with weight clipping.

    .. math::
        \hat{V}_{\mathrm{IPS}} = E_n[ \min(w_i, \lambda) \, r_i ]

    Unbiased without clipping (``lambda_=None``) when the logging policy covers the target's
    actions; clipping trades bias for variance.

    Reference: Precup, Sutton & Singh, "Eligibility Traces for Off-Policy Policy Evaluation",
    2000; Strehl et al., "Learning from Logged Implicit Exploration Data", 2010; obp
    ``InverseProbabilityWeighting`` (``lambda_``).

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> IPS().estimate_policy_value(data, np.array([1.0, 0.0]))
        1.0
        >>> IPS(lambda_=1.5).estimate_policy_value(data, np.array([1.0, 0.0]))
        0.75
    """

    estimator_name: ClassVar[str] = "ipw"

    lambda_: float | None = None
    """clipping threshold on importance weights (> 0); ``None`` clips nothing"""

    def __post_init__(self) -> None:
        if self.lambda_ is not None:
            check_scalar(self.lambda_, "lambda_", (int, float), min_val=0.0, min_inclusive=False)

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        w = inputs.weights if self.lambda_ is None else np.minimum(inputs.weights, self.lambda_)
        return RoundTerms(w * inputs.rewards)


@dataclass(frozen=True)
class SNIPS(BaseOffPolicyEstimator):
    r"""Self-normalized inverse propensity scoring (SNIPW).

    .. math::
        \hat{V}_{\mathrm{SNIPS}} = E_n[ w_i r_i ] / E_n[ w_i ]

    Biased but consistent; invariant to rescaling every propensity by one constant, and never
    outside the range of observed rewards. The bootstrap re-normalizes in every resample.

    Reference: Swaminathan & Joachims, "The Self-Normalized Estimator for Counterfactual
    Learning", NeurIPS 2015; obp ``SelfNormalizedInverseProbabilityWeighting``.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> SNIPS().estimate_policy_value(data, np.array([0.75, 0.25]))
        0.75
    """

    estimator_name: ClassVar[str] = "snipw"

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        w = inputs.weights
        return RoundTerms(None, w * inputs.rewards, w)


@dataclass(frozen=True)
class DR(BaseOffPolicyEstimator):
    r"""Doubly robust: the direct method corrected by importance-weighted residuals.

    .. math::
        \hat{V}_{\mathrm{DR}} = E_n[ \hat{q}(x_i, \pi_e) + w_i (r_i - \hat{q}(x_i, a_i)) ]

    Unbiased if either the propensities or the reward model are right. Pass cross-fitted
    predictions (:class:`~campaignrl.ope.reward_model.CrossFittedRewardModel`).

    Reference: Dudík, Erhan, Langford & Li, "Doubly Robust Policy Evaluation and
    Optimization", Statistical Science 2014; obp ``DoublyRobust``.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
        >>> round(DR().estimate_policy_value(data, np.array([1.0, 0.0]), estimated_rewards=q), 12)
        0.9
    """

    estimator_name: ClassVar[str] = "dr"
    needs_reward_model: ClassVar[bool] = True

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        q_factual, q_expected = _model_inputs(inputs)
        return RoundTerms(q_expected + inputs.weights * (inputs.rewards - q_factual))


@dataclass(frozen=True)
class SNDR(BaseOffPolicyEstimator):
    r"""Self-normalized doubly robust: DR with the residual term self-normalized.

    .. math::
        \hat{V}_{\mathrm{SNDR}} = E_n[ \hat{q}(x_i, \pi_e) ]
            + E_n[ w_i (r_i - \hat{q}(x_i, a_i)) ] / E_n[ w_i ]

    Reference: Kallus & Uehara, "Intrinsically Efficient, Stable, and Bounded Off-Policy
    Evaluation for Reinforcement Learning", NeurIPS 2019; obp
    ``SelfNormalizedDoublyRobust``.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
        >>> round(SNDR().estimate_policy_value(data, np.array([1.0, 0.0]), estimated_rewards=q), 12)
        0.9
    """

    estimator_name: ClassVar[str] = "sndr"
    needs_reward_model: ClassVar[bool] = True

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        q_factual, q_expected = _model_inputs(inputs)
        w = inputs.weights
        return RoundTerms(q_expected, w * (inputs.rewards - q_factual), w)


@dataclass(frozen=True)
class SwitchDR(BaseOffPolicyEstimator):
    r"""Switch doubly robust: DR where the weight is small, the direct method elsewhere.

    .. math::
        \hat{V}_{\mathrm{SwitchDR}} = E_n[ \hat{q}(x_i, \pi_e)
            + w_i (r_i - \hat{q}(x_i, a_i)) \, 1\{w_i \le \tau\} ]

    ``tau`` is required: no value is neutral (``tau -> inf`` is DR, ``tau -> 0`` is DM).

    Reference: Wang, Agarwal & Dudík, "Optimal and Adaptive Off-policy Evaluation in
    Contextual Bandits", ICML 2017; obp ``SwitchDoublyRobust`` (its ``lambda_`` is ``tau``).

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
        >>> SwitchDR(tau=1.0).estimate_policy_value(data, np.array([1.0, 0.0]), estimated_rewards=q)
        0.7
    """

    estimator_name: ClassVar[str] = "switch-dr"
    needs_reward_model: ClassVar[bool] = True

    tau: float
    """weight threshold (> 0): rows with ``w_i > tau`` use the reward model only"""

    def __post_init__(self) -> None:
        check_scalar(self.tau, "tau", (int, float), min_val=0.0, min_inclusive=False)

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        q_factual, q_expected = _model_inputs(inputs)
        w = inputs.weights
        keep = w <= self.tau
        return RoundTerms(q_expected + np.where(keep, w * (inputs.rewards - q_factual), 0.0))


@dataclass(frozen=True)
class DRos(BaseOffPolicyEstimator):
    r"""Doubly robust with optimistic shrinkage of the importance weights.

    .. math::
        \hat{V}_{\mathrm{DRos}} = E_n[ \hat{q}(x_i, \pi_e)
            + \hat{w}_i (r_i - \hat{q}(x_i, a_i)) ],
        \quad \hat{w}_i = \frac{\lambda w_i}{w_i^2 + \lambda}

    ``lambda_`` is required: ``lambda_ -> inf`` is DR, ``lambda_ -> 0`` is DM.

    Reference: Su, Dimakopoulou, Krishnamurthy & Dudík, "Doubly Robust Off-policy Evaluation
    with Shrinkage", ICML 2020; obp ``DoublyRobustWithShrinkage``.

    Examples:
        >>> from campaignrl.logs.io import LoggedData
        >>> data = LoggedData(np.array([0, 1]), np.array([1.0, 0.0]), np.full(2, 0.5), ("a", "b"))
        >>> q = np.array([[0.8, 0.1], [0.6, 0.2]])
        >>> round(DRos(lambda_=4.0).estimate_policy_value(
        ...     data, np.array([1.0, 0.0]), estimated_rewards=q), 12)
        0.8
    """

    estimator_name: ClassVar[str] = "dr-os"
    needs_reward_model: ClassVar[bool] = True

    lambda_: float
    """shrinkage strength (> 0)"""

    def __post_init__(self) -> None:
        check_scalar(self.lambda_, "lambda_", (int, float), min_val=0.0, min_inclusive=False)

    def _round_terms(self, inputs: OPEInputs) -> RoundTerms:
        q_factual, q_expected = _model_inputs(inputs)
        w = inputs.weights
        shrunk = self.lambda_ * w / (w * w + self.lambda_)
        return RoundTerms(q_expected + shrunk * (inputs.rewards - q_factual))


ESTIMATORS: dict[str, type[BaseOffPolicyEstimator]] = {
    cls.estimator_name: cls for cls in (DM, IPS, SNIPS, DR, SNDR, SwitchDR, DRos)
}
"""every bandit estimator by ``estimator_name`` (``SwitchDR`` and ``DRos`` need their
hyperparameter)"""
