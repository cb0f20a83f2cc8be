"""Agent settings checked whole before training, sizes that cannot fit, training budgets."""

from __future__ import annotations

import pytest

from campaignrl.agents.bandits import BanditConfig
from campaignrl.agents.baselines import baseline_settings, make_baseline
from campaignrl.agents.ppo import PPOConfig
from campaignrl.agents.qlearning import MAX_TABLE_ENTRIES, QLearningConfig, table_entries
from campaignrl.agents.registry import (
    LEARNERS,
    SettingError,
    build_config,
    check_sizes,
    training_budget,
)
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.simulators.presets import get_world


@pytest.mark.parametrize(
    ("cls", "changes", "error", "match"),
    [
        (QLearningConfig, {"recency_weeks": (8.0, 4.0)}, ValueError,
         r"`recency_weeks` must be strictly increasing, got \[8.0, 4.0\]"),
        (QLearningConfig, {"fatigue_levels": ("a",)}, TypeError,
         r"`fatigue_levels\[0\]` must be of type int or float, got str 'a'"),
        (QLearningConfig, {"fatigue_levels": (float("nan"),)}, ValueError,
         r"`fatigue_levels\[0\]` must be finite"),
        (QLearningConfig, {"periods_left_edges": (0.5, 2.0)}, ValueError,
         r"`periods_left_edges\[1\]` must be <= 1.0, got 2.0"),
        (QLearningConfig, {"recency_weeks": 4.0}, TypeError,
         r"`recency_weeks` must be a list of numbers, got float 4.0"),
        (QLearningConfig, {"recency_weeks": tuple(range(1, 60))}, ValueError,
         r"`recency_weeks` must have at most 50 edges, got 59"),
        (QLearningConfig, {"best_offer": "no"}, TypeError,
         r"`best_offer` must be true or false, got str 'no'"),
        (QLearningConfig, {"reach_and_cap": 1}, TypeError, r"`reach_and_cap` must be true or"),
        (BanditConfig, {"per_segment": "yes"}, TypeError, r"`per_segment` must be true or false"),
        (PPOConfig, {"learning_rate": -1}, ValueError, r"`learning_rate` must be > 0.0, got -1"),
        (PPOConfig, {"n_steps": 10**30}, ValueError, r"`n_steps` must be <= 10000"),
        (PPOConfig, {"batch_size": 10**12}, ValueError, r"`batch_size` must be <= 10000000"),
        (PPOConfig, {"n_epochs": 10**6}, ValueError, r"`n_epochs` must be <= 1000"),
        (PPOConfig, {"net_arch": (64,) * 9}, ValueError, r"`net_arch` must be 1 to 8 layer"),
        (PPOConfig, {"net_arch": (True,)}, ValueError, r"`net_arch` must be 1 to 8 layer"),
        (PPOConfig, {"normalize_reward": "true"}, TypeError, r"`normalize_reward` must be true"),
        (PPOConfig, {"extra": []}, TypeError, r"`extra` must be a mapping, got list"),
        (PPOConfig, {"extra": {"target_kl": 0.1, "tarket_kl": 1}}, ValueError,
         r"`extra` must hold MaskablePPO keyword arguments, got 'tarket_kl'"),
        (PPOConfig, {"extra": {"device": "cuda"}}, ValueError, r"`extra` must not set 'device'"),
    ],
)  # fmt: skip
def test_config_fields_are_checked_in_post_init(cls, changes, error, match):
    with pytest.raises(error, match=match):
        cls(**changes)


def test_valid_extra_keyword_arguments_pass():
    assert PPOConfig(extra={"target_kl": 0.05, "max_grad_norm": 1.0}).extra["target_kl"] == 0.05


@pytest.mark.parametrize(
    ("name", "params", "setting", "problem"),
    [
        ("ppo", {"learning_rate": -1}, "learning_rate", "must be > 0.0, got -1"),
        ("qlearning", {"recency_weeks": [4, 2]}, "recency_weeks", "must be strictly increasing"),
        ("lints", {"alpha": 0}, "alpha", "must be > 0 for lints (0 is lingreedy), got 0"),
        ("ucb1", {"epsilonn": 0.1}, None, "unknown setting(s) ['epsilonn'] for agent 'ucb1'"),
    ],
)
def test_build_config_names_the_setting(name, params, setting, problem):
    with pytest.raises(SettingError) as info:
        build_config(name, params)
    assert info.value.setting == setting and info.value.problem.startswith(problem)
    assert isinstance(info.value, ValueError)  # the CLI's one-line errors


def test_q_table_and_ppo_rollout_sizes_are_refused_before_allocation():
    world = get_world("retail")
    names = ObservationEncoder(world, 26).feature_names
    default = table_entries(QLearningConfig(), names, 19)
    assert default == 32 * 4 * 5 * 8 * 2 * 4 * 19  # segments, recency, fatigue, reach, cap, time
    huge = build_config("qlearning", {"recency_weeks": list(range(1, 51)), "best_offer": True})
    assert table_entries(huge, names, 19) > MAX_TABLE_ENTRIES
    with pytest.raises(SettingError, match=r"make a Q-table of [\d,]+ entries"):
        check_sizes("qlearning", huge, world=world, n_customers=10, horizon=26)
    check_sizes("ppo", PPOConfig(), world=world, n_customers=100_000, horizon=26)
    with pytest.raises(SettingError, match=r"rollouts of 26,000,026 customer-steps, over"):
        check_sizes("ppo", PPOConfig(), world=world, n_customers=1_000_001, horizon=26)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("random", ()),
        ("no-contact", ()),
        ("static-best", ("pilot_customers",)),
        ("rfm-rules", ()),
        ("myopic-oracle", ()),
        ("restrained-oracle", ("fatigue_threshold",)),
    ],
)
def test_baselines_take_only_their_own_settings(name, settings):
    assert baseline_settings(name) == settings
    takes = f"settings are {list(settings)}" if settings else "it takes none"
    with pytest.raises(
        ValueError, match=rf"unknown setting\(s\) \['eps'\] for baseline '{name}'; "
    ):
        make_baseline(name, eps=0.1)
    with pytest.raises(ValueError, match=takes.replace("[", r"\[").replace("]", r"\]")):
        make_baseline(name, eps=0.1)


@pytest.mark.parametrize(
    ("timesteps", "units", "trained"),
    [(1, 1, 1_200), (1_200, 1, 1_200), (1_201, 2, 2_400), (100_000, 84, 100_800)],
)
def test_budgets_round_up_to_whole_campaigns(timesteps, units, trained):
    for name in LEARNERS:
        if name == "ppo":
            continue
        budget = training_budget(name, None, timesteps=timesteps, n_customers=300, horizon=4)
        assert (budget.unit, budget.units, budget.timesteps) == (1_200, units, trained)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timesteps": 0}, r"`timesteps` must be >= 1, got 0"),
        ({"timesteps": 10**30}, r"`timesteps` must be <= 1000000000000"),
        ({"n_customers": 10**9}, r"`n_customers` must be <= 2000000"),
        ({"horizon": 0}, r"`horizon` must be >= 1, got 0"),
    ],
)
def test_bad_budgets_are_refused_by_name(kwargs, match):
    args = {"timesteps": 10, "n_customers": 10, "horizon": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        training_budget("ucb1", None, **args)
