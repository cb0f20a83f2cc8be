"""``Policy.checked_probabilities``: the probabilities of inputs checked by the caller."""

from __future__ import annotations

import numpy as np
import pytest
from policy_helpers import numbered_names, random_masks, random_spd_inverse

from campaignrl.policies.base import Exploration, Policy
from campaignrl.policies.linear import LinearPolicy

EXPLORATIONS = [
    Exploration(kind="softmax", epsilon=0.2),
    Exploration(kind="softmax", temperature=0.3),
    Exploration(kind="greedy", epsilon=0.1),
]


def _policies(exploration: Exploration) -> list[Policy]:
    rng = np.random.default_rng(17)
    feats, actions = ["seg_a", "seg_b", "x0", "x1"], numbered_names("a", 5)
    plain = LinearPolicy(feats, actions, rng.normal(size=(5, 4)), exploration=exploration)
    grouped = LinearPolicy(
        feats,
        actions,
        rng.normal(size=(5, 8)),
        a_inv=random_spd_inverse(rng, 5, 8),
        alpha=0.7,
        interact_with=["seg_a", "seg_b"],
        exploration=exploration,
    )
    return [plain, grouped]


@pytest.mark.parametrize("exploration", EXPLORATIONS)
def test_checked_probabilities_are_the_probabilities(exploration: Exploration) -> None:
    rng = np.random.default_rng(3)
    n = 500
    x = rng.normal(size=(n, 4))
    group = rng.integers(0, 2, n)
    x[:, 0], x[:, 1] = group == 0, group == 1  # one-hot groups (the per-group greedy path)
    masks = random_masks(rng, n, 5, 0.6)
    for policy in _policies(exploration):
        # Public probabilities are their checks, then checked_probabilities.
        assert type(policy).probabilities is Policy.probabilities
        want = policy.probabilities(x, masks)
        # Column-major masks, as the checks hand them on; the same features (a BLAS kernel
        # may round a row's scores differently in another memory layout).
        got = policy.checked_probabilities(x, np.asfortranarray(masks))
        assert got.view(np.uint64).tolist() == want.view(np.uint64).tolist()  # to the bit
        assert np.all(got[~masks] == 0.0)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_probabilities_still_check_their_inputs() -> None:
    policy = _policies(EXPLORATIONS[0])[0]
    with pytest.raises(ValueError, match=r"`features` must be finite, got nan at row 0"):
        policy.probabilities(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match=r"`masks` allows no action at row 0"):
        policy.probabilities(np.zeros((1, 4)), np.zeros((1, 5), dtype=bool))
