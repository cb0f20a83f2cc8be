"""Tests for campaignrl.envs.sb3: the stable-baselines3 VecEnv adapter."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from float_bounds import gamma
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

import campaignrl  # noqa: F401  (registers the env id)
from campaignrl.catalog import Catalog, default_catalog
from campaignrl.envs import ENV_ID, CampaignSB3VecEnv, CampaignVectorEnv

N = 16


def make(n: int = N, horizon: int = 26, **kwargs) -> CampaignSB3VecEnv:
    return CampaignSB3VecEnv(CampaignVectorEnv(n, horizon=horizon, **kwargs))


def test_adapter_is_an_sb3_vecenv_with_the_vector_spaces():
    venv = make()
    assert isinstance(venv, VecEnv)
    assert venv.num_envs == N
    assert venv.observation_space == venv.venv.single_observation_space
    assert venv.action_space == gym.spaces.Discrete(19)
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * N


def test_lazy_import_from_the_envs_package():
    import campaignrl.envs as envs
    from campaignrl.envs.sb3 import CampaignSB3VecEnv as direct

    assert envs.CampaignSB3VecEnv is direct
    with pytest.raises(AttributeError, match="NoSuchThing"):
        envs.NoSuchThing  # noqa: B018


@pytest.mark.parametrize(
    "venv",
    ["retail", None, gym.make(ENV_ID)],
    ids=["str", "None", "single-env"],
)
def test_constructor_refuses_anything_but_a_campaign_vector_env(venv):
    with pytest.raises(
        TypeError, match=f"`venv` must be a CampaignVectorEnv, got {type(venv).__name__}"
    ):
        CampaignSB3VecEnv(venv)


def test_seed_then_reset_is_reproducible():
    a, b, c = make(), make(), make()
    assert a.seed(5) == [5] * N
    b.seed(5)
    c.seed(6)
    first = a.reset()
    assert first.shape == (N, a.observation_space.shape[0])
    np.testing.assert_array_equal(first, b.reset())
    assert not np.array_equal(first, c.reset())


def make_seeded(seed: int) -> CampaignSB3VecEnv:
    venv = make()
    venv.seed(seed)
    return venv


def test_seed_applies_to_the_next_reset_only():
    a = make_seeded(5)
    first = a.reset()
    second = a.reset()
    assert not np.array_equal(first, second)
    b = make_seeded(5)
    np.testing.assert_array_equal(b.reset(), first)
    np.testing.assert_array_equal(b.reset(), second)


def test_dones_and_terminal_observation_at_the_episode_end():
    horizon = 5
    venv = make(horizon=horizon)
    twin = CampaignVectorEnv(N, horizon=horizon)
    venv.seed(1)
    venv.reset()
    twin.reset(seed=1)
    for t in range(1, horizon + 1):
        actions = np.full(N, t % 4)
        obs, rewards, dones, infos = venv.step(actions)
        obs_t, rewards_t, _, _, infos_t = twin.step(actions)
        assert isinstance(infos, list) and len(infos) == N
        assert rewards.dtype == np.float32 and dones.dtype == bool
        np.testing.assert_array_equal(rewards, rewards_t.astype(np.float32))
        if t < horizon:
            assert not dones.any()
            assert all("terminal_observation" not in info for info in infos)
        else:
            assert dones.all()
            for i, info in enumerate(infos):
                np.testing.assert_array_equal(info["terminal_observation"], infos_t["final_obs"][i])
                # the horizon is a termination: SB3 must not bootstrap there
                assert info["TimeLimit.truncated"] is False
            np.testing.assert_array_equal(obs, obs_t)  # already the next population
            left = venv.venv.encoder.feature_names.index("periods_left")
            np.testing.assert_array_equal(obs[:, left], 1.0)
            terminal = np.stack([info["terminal_observation"] for info in infos])
            np.testing.assert_array_equal(terminal[:, left], 0.0)


def test_vec_monitor_reports_episode_return_and_length():
    horizon = 6
    venv = VecMonitor(make(n=8, horizon=horizon))
    venv.seed(2)
    venv.reset()
    total = np.zeros(8)
    magnitude = np.zeros(8)
    for _ in range(horizon):
        _, rewards, dones, infos = venv.step(np.ones(8, dtype=np.int64))
        total += rewards
        magnitude += np.abs(rewards)
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["episode"]["l"] == horizon
        # VecMonitor adds the float32 rewards up in float32: within gamma_horizon of the sum
        # of their magnitudes (u = 2^-24) of the float64 sum.
        tol = gamma(horizon) * magnitude[i]
        assert info["episode"]["r"] == pytest.approx(total[i], rel=0, abs=tol)


def test_step_wait_without_step_async_raises():
    venv = make()
    venv.reset()
    with pytest.raises(RuntimeError, match=r"step_async"):
        venv.step_wait()


# ---------------------------------------------------------------- masks and env_method


def test_env_method_action_masks_returns_one_row_per_env():
    venv = make(world="fatigue")
    venv.seed(3)
    venv.reset()
    rows = venv.env_method("action_masks")
    assert len(rows) == N
    assert all(r.shape == (19,) and r.dtype == bool for r in rows)
    full = venv.venv.action_masks()
    np.testing.assert_array_equal(np.stack(rows), full)
    subset = venv.env_method("action_masks", indices=[2, 5])
    np.testing.assert_array_equal(np.stack(subset), full[[2, 5]])
    assert venv.env_method("action_masks", indices=7)[0].shape == (19,)
    masks = get_action_masks(venv)
    assert masks.shape == (N, 19)
    np.testing.assert_array_equal(masks, full)
    np.testing.assert_array_equal(venv.action_masks(), full)


def test_env_method_expected_reward_rows_and_shared_results():
    venv = make()
    venv.seed(4)
    venv.reset()
    rows = venv.env_method("expected_reward")
    np.testing.assert_array_equal(np.stack(rows), venv.venv.expected_reward())
    # a method with a shared (not per-customer) result is repeated per index
    observed = venv.env_method("observe", indices=[0, 1])
    assert len(observed) == 2 and observed[0].shape == (N, venv.observation_space.shape[0])
    assert venv.get_attr("action_names") == [venv.venv.action_names] * N
    assert venv.get_attr("num_envs", indices=[0, 3]) == [N, N]
    venv.set_attr("some_flag", 7)
    assert venv.venv.some_flag == 7


def test_masked_action_is_flagged_in_infos_and_executed_as_no_contact():
    cat = default_catalog()
    no_sms = Catalog(
        cat.offers,
        tuple(replace(c, consent_rate=0.0) if c.name == "sms" else c for c in cat.channels),
    )
    venv = make(catalog=no_sms)
    twin = make(catalog=no_sms)
    sms = cat.action_index("content@sms")
    venv.seed(5)
    twin.seed(5)
    venv.reset()
    twin.reset()
    assert not get_action_masks(venv)[:, sms].any()
    obs, rewards, _, infos = venv.step(np.full(N, sms))
    obs_t, rewards_t, _, _ = twin.step(np.zeros(N, dtype=np.int64))
    np.testing.assert_array_equal(obs, obs_t)  # executed as no contact
    np.testing.assert_array_equal(rewards, rewards_t)
    # ...and flagged, as CampaignEnv and CampaignVectorEnv flag it
    assert [info.get("masked") for info in infos] == [True] * N
    assert [info.get("executed_action") for info in infos] == [0] * N


def test_maskable_ppo_trains_and_predicts_only_allowed_actions():
    venv = make(n=8, horizon=4, world="fatigue")
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=32, n_epochs=1, seed=0)
    model.learn(total_timesteps=64)
    venv.seed(0)
    obs = venv.reset()
    for _ in range(4):
        masks = get_action_masks(venv)
        actions, _ = model.predict(obs, action_masks=masks, deterministic=False)
        assert masks[np.arange(8), actions].all()
        obs, _, _, _ = venv.step(actions)
