"""Calibration report: a world's per-send rates beside published industry ranges."""

from __future__ import annotations

import numpy as np
import pandas as pd

from campaignrl._checks import check_scalar
from campaignrl.policies.sampling import sample_actions, uniform_probabilities
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.spec import WorldSpec

__all__ = ["SURVEY_RANGES", "calibration_report"]

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
"""DESIGN.md's calibration table (per message sent, consumer lists)."""


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
