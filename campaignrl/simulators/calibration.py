"""Calibration report: a world's per-send rates beside published industry ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl.policies.sampling import sample_actions, uniform_probabilities
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "REPORT_COLUMNS",
    "SURVEY_RANGES",
    "SurveyRange",
    "calibration_report",
    "out_of_range",
    "parse_survey_range",
]

SURVEY_RANGES: dict[str, dict[str, str]] = {
    "email": {"opened": "15-25%", "opted_out": "0.1-0.3%", "cost": "~$0.001", "reachable": "most"},
    "sms": {
        "opened": "~90%+",
        "opted_out": "1-2%",
        "cost": "$0.01-0.05",
        "reachable": "30-60% of email",
    },
    "push": {
        "opened": "5-10%",
        "opted_out": "grows with volume",
        "cost": "~0",
        "reachable": "40-60%",
    },
}
"""Industry calibration ranges (per message sent, consumer lists), as text."""

REPORT_COLUMNS: dict[str, str] = {
    "reachable": "reachable",
    "opened": "opened",
    "opted_out": "opted_out",
    "cost": "cost_per_send",
}
"""The :func:`calibration_report` column each :data:`SURVEY_RANGES` key is compared with."""

_APPROX = 0.1
"""relative tolerance of an approximate figure: ``~x`` means ``[0.9 x, 1.1 x]``"""


@dataclass(frozen=True)
class SurveyRange:
    """A survey range as a closed numeric interval ``[low, high]``.

    Percentages are fractions (``15-25%`` is ``[0.15, 0.25]``), costs are dollars. With
    ``relative_to``, the bounds are multiples of that channel's value of the same measure
    (``30-60% of email``).
    """

    low: float
    """lower end"""
    high: float
    """upper end (``inf`` for an open range)"""
    relative_to: str | None = None
    """channel whose value scales both ends, or None for absolute bounds"""

    def contains(self, value: float, reference: float | None = None) -> bool:
        """Whether ``value`` lies in the range (scaled by ``reference`` if relative).

        Examples:
            >>> SurveyRange(0.15, 0.25).contains(0.146)
            False
            >>> SurveyRange(0.3, 0.6, relative_to="email").contains(0.42, reference=0.92)
            True
        """
        scale = 1.0 if self.relative_to is None else reference
        if scale is None:
            raise ValueError(f"`reference` is needed for a range relative to {self.relative_to!r}")
        return bool(self.low * scale <= value <= self.high * scale)


_NUMBER = r"(\d+(?:\.\d+)?)"
_BETWEEN = re.compile(rf"^(\$)?{_NUMBER}-{_NUMBER}(%)?(?: of (\w+))?$")
_SINGLE = re.compile(rf"^(~)?(\$)?{_NUMBER}(%)?(\+)?$")


def parse_survey_range(text: str) -> SurveyRange | None:
    """The numeric interval of one :data:`SURVEY_RANGES` entry, or None if it has none.

    Forms: ``a-b%`` and ``$a-b`` (closed intervals), ``a-b% of <channel>`` (relative to
    that channel), ``~x`` (within 10% of ``x``; ``~0`` is exactly 0), ``x%+`` (``x`` or more,
    at most 100%), ``~x%+`` (within 10% below ``x`` or more), ``most`` (half or more). Words
    without a number (``grows with volume``) give None.

    Examples:
        >>> parse_survey_range("15-25%")
        SurveyRange(low=0.15, high=0.25, relative_to=None)
        >>> parse_survey_range("~90%+")
        SurveyRange(low=0.81, high=1.0, relative_to=None)
        >>> parse_survey_range("grows with volume") is None
        True
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    t = " ".join(text.split())
    if t == "most":
        return SurveyRange(0.5, 1.0)
    between = _BETWEEN.match(t)
    if between:
        _dollar, a, b, pct, of = between.groups()
        scale = 0.01 if pct else 1.0
        low, high = float(a) * scale, float(b) * scale
        if low > high:
            raise ValueError(f"survey range {text!r} has its ends reversed")
        return SurveyRange(round(low, 12), round(high, 12), of)
    single = _SINGLE.match(t)
    if single:
        approx, _dollar, x, pct, plus = single.groups()
        value = float(x) * (0.01 if pct else 1.0)
        tol = _APPROX if approx else 0.0
        low = value * (1.0 - tol)
        if plus:
            high = 1.0 if pct else float("inf")
        else:
            high = value * (1.0 + tol)
        return SurveyRange(round(low, 12), round(high, 12))
    if re.search(r"\d", t):
        raise ValueError(f"survey range {text!r} has a number but no form parse_survey_range reads")
    return None


def calibration_report(
    spec: WorldSpec,
    *,
    send_rate: float = 0.5,
    n_customers: int = 20_000,
    horizon: int = 26,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-channel rates at a typical cadence, to set beside :data:`SURVEY_RANGES`.

    Each period each customer is, with chance ``send_rate``, sent a uniformly random allowed
    contact (a send every other week by default), else nothing. Fatigue builds as it would
    in a real programme at that cadence.

    Returns:
        One row per channel: ``sends``, ``reachable`` (share at the start), ``opened``,
        ``converted`` (opened and bought, per send), ``winback_opened`` (open rate of sends
        to lapsing customers), ``opted_out`` (per send), ``cost_per_send``.
    """
    check_scalar(send_rate, "send_rate", (int, float), min_val=0.0, max_val=1.0)
    sim = CustomerSimulator(spec, n_customers, horizon)
    rng = np.random.default_rng(seed)
    sim.reset(rng)
    cat = spec.catalog
    reach0 = (sim.state.consent).mean(axis=0)
    n_c = cat.n_channels
    sends = np.zeros(n_c)
    opened = np.zeros(n_c)
    converted = np.zeros(n_c)
    opted = np.zeros(n_c)
    wb_sends = np.zeros(n_c)
    wb_opened = np.zeros(n_c)
    while not sim.done:
        masks = sim.action_masks()
        contact_masks = masks.copy()
        contact_masks[:, 0] = ~masks[:, 1:].any(axis=1)
        actions, _ = sample_actions(uniform_probabilities(contact_masks), rng)
        actions[rng.random(n_customers) >= send_rate] = 0
        lapsing = sim.state.recency >= spec.lapse_after
        res = sim.step(actions, rng)
        ch = cat.channel_of[res.action]
        for c in range(n_c):
            sent = ch == c
            sends[c] += sent.sum()
            opened[c] += (sent & res.opened).sum()
            converted[c] += (sent & res.redeemed).sum()
            opted[c] += (sent & res.unsubscribed).sum()
            wb_sends[c] += (sent & lapsing).sum()
            wb_opened[c] += (sent & lapsing & res.opened).sum()
    safe = np.maximum(sends, 1)
    return pd.DataFrame(
        {
            "channel": [c.name for c in cat.channels],
            "sends": sends.astype(np.int64),
            "reachable": reach0,
            "opened": opened / safe,
            "converted": converted / safe,
            "winback_opened": wb_opened / np.maximum(wb_sends, 1),
            "opted_out": opted / safe,
            "cost_per_send": [c.cost_per_contact for c in cat.channels],
        }
    )


def out_of_range(
    report: pd.DataFrame, ranges: dict[str, dict[str, str]] | None = None
) -> pd.DataFrame:
    """Which values of a :func:`calibration_report` fall outside their survey range.

    Args:
        report: One row per channel, with the columns of :data:`REPORT_COLUMNS`.
        ranges: Ranges as text by channel and measure (default: :data:`SURVEY_RANGES`).

    Returns:
        One row per channel of ``report`` (same index) and one column per measure of
        :data:`REPORT_COLUMNS` (named by the report column): True outside the range, False
        inside, None where there is no numeric range.
    """
    ranges = SURVEY_RANGES if ranges is None else ranges
    missing = [c for c in ("channel", *REPORT_COLUMNS.values()) if c not in report.columns]
    if missing:
        raise ValueError(f"`report` is missing column(s) {missing}")
    by_channel = {str(row.channel): row for row in report.itertuples()}
    flags: dict[str, list[bool | None]] = {col: [] for col in REPORT_COLUMNS.values()}
    for row in report.itertuples():
        ref = ranges.get(str(row.channel), {})
        for key, col in REPORT_COLUMNS.items():
            parsed = parse_survey_range(ref[key]) if key in ref else None
            if parsed is None:
                flags[col].append(None)
                continue
            reference = None
            if parsed.relative_to is not None:
                other = by_channel.get(parsed.relative_to)
                if other is None:
                    flags[col].append(None)
                    continue
                reference = float(getattr(other, col))
            flags[col].append(not parsed.contains(float(getattr(row, col)), reference))
    return pd.DataFrame(flags, index=report.index, dtype=object)
