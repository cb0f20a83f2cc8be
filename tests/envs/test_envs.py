"""Contract tests for campaignrl.envs: registration, the single and vector faces, observations.

Every face is a view of one core, so besides Gymnasium's own checkers the tests hold the
faces to each other: same seed and same actions give the same trajectory through each.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from float_bounds import U32
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import campaignrl  # noqa: F401  (registers the env id)
from campaignrl.catalog import Catalog, default_catalog
from campaignrl.envs import ENV_ID, CampaignEnv, CampaignSB3VecEnv, CampaignVectorEnv
from campaignrl.simulators import get_world, world_names

WORLDS = list(world_names())
F32_RTOL = 4 * U32
"""Observations are float64 formulas stored in float32: at most three float32 roundings (of
operands, of the operation, of the store; u = 2^-24 relative each) and float64's (2^-53): the
same on every CPU, as +, -, *, / and the cast round correctly (tanh: float64, 2 ulps)."""


def random_allowed(masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random allowed action per row of ``masks``."""
    masks = np.atleast_2d(masks)
    scores = np.where(masks, rng.random(masks.shape), -1.0)
    return scores.argmax(axis=1)


def column(name: str, world: str = "retail") -> int:
    return CampaignVectorEnv(1, world=world).encoder.feature_names.index(name)


def no_sms_catalog() -> Catalog:
    """The default catalog with nobody consenting to SMS: every SMS action is masked."""
    cat = default_catalog()
    channels = tuple(replace(c, consent_rate=0.0) if c.name == "sms" else c for c in cat.channels)
    return Catalog(cat.offers, channels)


# ---------------------------------------------------------------- registration and checkers


def test_env_id_is_registered_with_its_defaults():
    spec = gym.spec(ENV_ID)
    assert ENV_ID == "campaignrl/Campaign-v0"
    assert spec.entry_point == "campaignrl.envs.single:CampaignEnv"
    assert spec.vector_entry_point == "campaignrl.envs.vector:CampaignVectorEnv"
    assert spec.kwargs == {"world": "retail", "horizon": 26}
    assert spec.max_episode_steps is None  # the horizon is a termination, not a time limit


@pytest.mark.parametrize("world", WORLDS)
def test_gymnasium_env_checker_passes(world):
    env = gym.make(ENV_ID, world=world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    assert isinstance(env.unwrapped, CampaignEnv)


@pytest.mark.parametrize("world", WORLDS)
def test_sb3_env_checker_passes(world):
    env = gym.make(ENV_ID, world=world)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("world", WORLDS)
def test_make_vec_uses_the_vector_entry_point(world):
    venv = gym.make_vec(ENV_ID, num_envs=8, world=world)
    assert isinstance(venv, CampaignVectorEnv)
    assert venv.num_envs == 8
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.simulator.spec.name == world and venv.simulator.horizon == 26
    single = gym.make(ENV_ID, world=world)
    assert venv.single_observation_space == single.observation_space
    assert venv.single_action_space == single.action_space == gym.spaces.Discrete(19)
    assert venv.observation_space.shape == (8, single.observation_space.shape[0])
    obs, info = venv.reset(seed=0)
    assert obs.shape == (8, single.observation_space.shape[0]) and info == {}


# ---------------------------------------------------------------- episodes


@pytest.mark.parametrize("world", WORLDS)
def test_single_env_observations_stay_in_space_and_terminate_at_horizon(world):
    horizon = 26
    env = gym.make(ENV_ID, world=world, horizon=horizon)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs, info = env.reset(seed=episode)
        assert env.observation_space.contains(obs) and info == {}
        for t in range(1, horizon + 1):
            action = int(random_allowed(env.unwrapped.action_masks(), rng)[0])
            obs, reward, terminated, truncated, info = env.step(action)
            assert obs.dtype == np.float32 and env.observation_space.contains(obs), t
            assert isinstance(reward, float)
            assert truncated is False
            assert terminated is (t == horizon), t
            assert info["masked"] is False and info["executed_action"] == action
    with pytest.raises(RuntimeError, match="episode is over"):
        env.unwrapped.step(0)


@pytest.mark.parametrize("world", WORLDS)
def test_vector_env_observations_stay_in_space_and_terminate_at_horizon(world):
    horizon, n = 7, 64
    venv = CampaignVectorEnv(n, world=world, horizon=horizon)
    rng = np.random.default_rng(1)
    obs, _ = venv.reset(seed=3)
    assert venv.observation_space.contains(obs)
    for t in range(1, 2 * horizon + 1):  # two episodes: through one autoreset
        obs, rewards, terminated, truncated, infos = venv.step(
            random_allowed(venv.action_masks(), rng)
        )
        assert obs.dtype == np.float32 and venv.observation_space.contains(obs), t
        assert rewards.shape == (n,) and terminated.shape == truncated.shape == (n,)
        assert not truncated.any()
        assert terminated.all() if t % horizon == 0 else not terminated.any(), t
        assert not infos["masked"].any()
        if t % horizon == 0:
            assert venv.single_observation_space.contains(infos["final_obs"][0])
            assert venv.observation_space.contains(infos["final_obs"])


def test_vector_env_same_step_autoreset_returns_a_fresh_population():
    horizon, n = 4, 32
    venv = CampaignVectorEnv(n, world="fatigue", horizon=horizon)
    first, _ = venv.reset(seed=5)
    first_segments = venv.simulator.state.segment.copy()
    email = venv.action_names.index("content@email")
    for _ in range(horizon - 1):
        obs, _, terminated, _, infos = venv.step(np.full(n, email))
        assert "final_obs" not in infos and "_final_obs" not in infos
        assert not terminated.any()
    last_seen = obs
    obs, _, terminated, _, infos = venv.step(np.full(n, email))
    assert terminated.all()
    final = infos["final_obs"]
    np.testing.assert_array_equal(infos["_final_obs"], np.ones(n, dtype=bool))
    left, fatigue, cap = (column(c) for c in ("periods_left", "fatigue", "cap_used"))
    # the final observation is the end of the old episode...
    np.testing.assert_array_equal(final[:, left], 0.0)
    assert (final[:, fatigue] > 0).any()
    assert (final[:, cap] > 0).any() and (last_seen[:, cap] > 0).any()
    # ...the returned one is the start of a new population
    assert venv.simulator.t == 0
    np.testing.assert_array_equal(obs, venv.observe())
    np.testing.assert_array_equal(obs[:, left], 1.0)
    np.testing.assert_array_equal(obs[:, fatigue], 0.0)
    np.testing.assert_array_equal(obs[:, cap], 0.0)
    assert not np.array_equal(venv.simulator.state.segment, first_segments)
    assert not np.array_equal(obs, first)  # a new draw, not a replay of the first reset
    # and the new episode runs a full horizon again
    for t in range(1, horizon + 1):
        _, _, terminated, _, _ = venv.step(np.zeros(n, dtype=np.int64))
        assert terminated.all() == (t == horizon)


@pytest.mark.parametrize("horizon", [1, 5, 26])
def test_periods_left_decreases_by_one_over_horizon_each_step(horizon):
    env = gym.make(ENV_ID, horizon=horizon)
    left = column("periods_left")
    obs, _ = env.reset(seed=0)
    assert obs[left] == 1.0
    for t in range(1, horizon + 1):
        previous = obs[left]
        obs, *_ = env.step(0)
        assert obs[left] == np.float32((horizon - t) / horizon)
        # two stored values <= 1, each within u of exact, and their float32 difference
        assert previous - obs[left] == pytest.approx(1.0 / horizon, rel=0, abs=3 * U32)
    assert obs[left] == 0.0


# ---------------------------------------------------------------- observation encoding


@pytest.mark.parametrize("world", WORLDS)
def test_feature_names_match_the_observation(world):
    env = CampaignEnv(world=world)
    names = env.encoder.feature_names
    obs, _ = env.reset(seed=0)
    assert len(names) == env.encoder.dim == obs.shape[0] == env.observation_space.shape[0]
    assert len(set(names)) == len(names)
    spec = env.simulator.spec
    want = [f"segment={s}" for s in spec.segment_names]
    want += ["recency", "frequency", "monetary", "fatigue"]
    want += [f"reachable={c.name}" for c in spec.catalog.channels]
    want += ["cap_used"] + [f"affinity={o.name}" for o in spec.catalog.offers] + ["periods_left"]
    assert list(names) == want


def test_observation_encodes_the_state_as_documented():
    venv = CampaignVectorEnv(500, world="retail", horizon=10)
    rng = np.random.default_rng(2)
    venv.reset(seed=4)
    for _ in range(3):
        venv.step(random_allowed(venv.action_masks(), rng))
    obs = venv.observe()
    st = venv.simulator.state
    names = venv.encoder.feature_names
    col = {name: i for i, name in enumerate(names)}
    segments = [n for n in names if n.startswith("segment=")]
    np.testing.assert_array_equal(obs[:, : len(segments)].argmax(axis=1), st.segment)
    np.testing.assert_array_equal(obs[:, : len(segments)].sum(axis=1), 1.0)
    np.testing.assert_allclose(obs[:, col["recency"]], np.minimum(st.recency, 52) / 52, F32_RTOL)
    np.testing.assert_allclose(
        obs[:, col["frequency"]], st.frequency / (st.frequency + 5), F32_RTOL
    )
    np.testing.assert_allclose(obs[:, col["monetary"]], st.monetary / (st.monetary + 100), F32_RTOL)
    np.testing.assert_allclose(obs[:, col["fatigue"]], st.fatigue / (1 + st.fatigue), F32_RTOL)
    for c, channel in enumerate(("email", "sms", "push")):
        reachable = st.consent[:, c] & ~st.unsubscribed[:, c]
        np.testing.assert_array_equal(obs[:, col[f"reachable={channel}"]], reachable)
    np.testing.assert_allclose(obs[:, col["cap_used"]], st.contacts_in_window / 3, F32_RTOL)
    np.testing.assert_allclose(
        obs[:, col["affinity=pct20"]], np.tanh(st.affinity[:, 2] / 2), F32_RTOL
    )
    np.testing.assert_allclose(obs[:, col["periods_left"]], 0.7, F32_RTOL)
    assert not any("churn" in n for n in names)  # churn is hidden


# ---------------------------------------------------------------- one core, three faces


def run_single(world: str, seed: int, actions: np.ndarray):
    env = gym.make(ENV_ID, world=world)
    obs, _ = env.reset(seed=seed)
    trace = [(obs, None, None, None)]
    for a in actions:
        obs, reward, terminated, _, info = env.step(int(a))
        trace.append((obs, reward, terminated, (info["masked"], info["executed_action"])))
    return trace


def run_vector(world: str, seed: int, actions: np.ndarray):
    venv = CampaignVectorEnv(1, world=world)
    obs, _ = venv.reset(seed=seed)
    trace = [(obs[0], None, None, None)]
    for a in actions:
        obs, rewards, terminated, _, infos = venv.step(np.array([a]))
        seen = infos["final_obs"][0] if terminated[0] else obs[0]
        executed = (bool(infos["masked"][0]), int(infos["executed_action"][0]))
        trace.append((seen, float(rewards[0]), bool(terminated[0]), executed))
    return trace


def run_sb3(world: str, seed: int, actions: np.ndarray):
    venv = CampaignSB3VecEnv(CampaignVectorEnv(1, world=world))
    venv.seed(seed)
    obs = venv.reset()
    trace = [(obs[0], None, None, None)]
    for a in actions:
        obs, rewards, dones, infos = venv.step(np.array([a]))
        seen = infos[0]["terminal_observation"] if dones[0] else obs[0]
        trace.append((seen, rewards[0], bool(dones[0]), None))
    return trace


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.parametrize("seed", [0, 17])
def test_same_seed_same_actions_same_trajectory_through_every_face(world, seed):
    # Random over *all* actions: masked requests are part of the trajectory too.
    actions = np.random.default_rng(seed + 100).integers(0, 19, size=26)
    single, vector, sb3 = (run(world, seed, actions) for run in (run_single, run_vector, run_sb3))
    assert len(single) == len(vector) == len(sb3) == 27
    for t, (s, v, b) in enumerate(zip(single, vector, sb3, strict=True)):
        np.testing.assert_array_equal(s[0], v[0], err_msg=f"single vs vector obs at t={t}")
        np.testing.assert_array_equal(v[0], b[0], err_msg=f"vector vs sb3 obs at t={t}")
        assert s[1] == v[1], t  # float64 rewards, bit for bit
        if t:
            assert b[1] == np.float32(v[1]), t  # SB3 VecEnvs carry float32 rewards
        assert s[2] == v[2] == b[2] == (t == 26 if t else None)
        assert s[3] == v[3], t
    # the trajectory actually depends on the seed
    other = run_single(world, seed + 1, actions)
    assert not np.array_equal(single[0][0], other[0][0]) or single[1][1] != other[1][1]


def test_vector_env_and_sb3_adapter_agree_over_a_population():
    n, horizon = 64, 26
    vec = CampaignVectorEnv(n, world="fatigue", horizon=horizon)
    sb3 = CampaignSB3VecEnv(CampaignVectorEnv(n, world="fatigue", horizon=horizon))
    rng = np.random.default_rng(7)
    obs_v, _ = vec.reset(seed=42)
    sb3.seed(42)
    obs_b = sb3.reset()
    np.testing.assert_array_equal(obs_v, obs_b)
    for t in range(1, 2 * horizon + 1):  # across the autoreset into a second episode
        actions = rng.integers(0, 19, size=n)
        obs_v, rew_v, term_v, trunc_v, infos = vec.step(actions)
        obs_b, rew_b, dones, sb3_infos = sb3.step(actions)
        np.testing.assert_array_equal(obs_v, obs_b, err_msg=f"t={t}")
        np.testing.assert_array_equal(rew_v.astype(np.float32), rew_b, err_msg=f"t={t}")
        np.testing.assert_array_equal(term_v | trunc_v, dones)
        if t % horizon == 0:
            terminal = np.stack([info["terminal_observation"] for info in sb3_infos])
            np.testing.assert_array_equal(infos["final_obs"], terminal)


def test_world_spec_and_preset_name_give_the_same_env():
    a = CampaignEnv(world="sparse")
    b = CampaignEnv(world=get_world("sparse"))
    oa, _ = a.reset(seed=9)
    ob, _ = b.reset(seed=9)
    np.testing.assert_array_equal(oa, ob)
    for action in (0, 1, 2, 7, 0):
        ra, rb = a.step(action), b.step(action)
        np.testing.assert_array_equal(ra[0], rb[0])
        assert ra[1:4] == rb[1:4]


def test_vector_reset_seed_list_uses_its_first_seed_and_unseeded_reset_continues():
    a, b = CampaignVectorEnv(16), CampaignVectorEnv(16)
    first, _ = a.reset(seed=[3, 99])
    np.testing.assert_array_equal(first, b.reset(seed=3)[0])
    again, _ = a.reset()
    assert not np.array_equal(first, again)  # the generator moved on, not re-seeded


# ---------------------------------------------------------------- masked actions


def test_single_env_masked_action_is_flagged_and_is_no_contact():
    masked_env = gym.make(ENV_ID, catalog=no_sms_catalog())
    twin = gym.make(ENV_ID, catalog=no_sms_catalog())
    sms = masked_env.unwrapped.simulator.spec.catalog.action_index("pct10@sms")
    np.testing.assert_array_equal(*(e.reset(seed=1)[0] for e in (masked_env, twin)))
    assert not masked_env.unwrapped.action_masks()[sms]
    for _ in range(10):
        obs, reward, _, _, info = masked_env.step(sms)
        obs_t, reward_t, _, _, info_t = twin.step(0)
        assert info["masked"] is True and info["executed_action"] == 0
        assert info_t["masked"] is False
        assert reward == reward_t and not info["opened"]
        np.testing.assert_array_equal(obs, obs_t)


def test_vector_env_masked_action_is_flagged_and_is_no_contact():
    n = 200
    masked_env = CampaignVectorEnv(n, catalog=no_sms_catalog())
    twin = CampaignVectorEnv(n, catalog=no_sms_catalog())
    sms = masked_env.action_names.index("content@sms")
    np.testing.assert_array_equal(masked_env.reset(seed=2)[0], twin.reset(seed=2)[0])
    for _ in range(5):
        obs, rewards, _, _, infos = masked_env.step(np.full(n, sms))
        obs_t, rewards_t, _, _, infos_t = twin.step(np.zeros(n, dtype=np.int64))
        assert infos["masked"].all() and not infos_t["masked"].any()
        np.testing.assert_array_equal(infos["executed_action"], 0)
        np.testing.assert_array_equal(rewards, rewards_t)
        np.testing.assert_array_equal(obs, obs_t)


def test_action_masks_and_expected_reward_of_each_face():
    env = CampaignEnv(world="retail")
    env.reset(seed=0)
    assert env.action_masks().shape == (19,) and env.action_masks().dtype == bool
    np.testing.assert_array_equal(env.action_masks(), env.simulator.action_masks()[0])
    np.testing.assert_array_equal(env.expected_reward(), env.simulator.expected_reward()[0])
    venv = CampaignVectorEnv(10, world="retail")
    venv.reset(seed=0)
    assert venv.action_masks().shape == (10, 19)
    assert venv.expected_reward().shape == (10, 19)
    assert venv.action_names[0] == "no_contact" and len(venv.action_names) == 19


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"num_envs": 0}, ValueError, "`num_envs` must be >= 1, got 0"),
        ({"num_envs": 2.5}, TypeError, r"`num_envs` must be of type .*, got float 2\.5"),
        ({"horizon": 0}, ValueError, "`horizon` must be >= 1, got 0"),
        ({"horizon": -3}, ValueError, "`horizon` must be >= 1, got -3"),
        ({"world": "shop"}, ValueError, r"`world` must be a preset \(retail.*, got 'shop'"),
        ({"world": 3}, TypeError, "`world` must be a preset name or a WorldSpec, got int"),
        ({"margin_rate": 2.0}, ValueError, r"`WorldSpec\.margin_rate` must be <= 1\.0, got 2\.0"),
        ({"horizn": 5}, ValueError, re.escape("unknown WorldSpec field(s) ['horizn']")),
    ],
)
def test_vector_env_refuses_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        CampaignVectorEnv(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"horizon": 0}, ValueError, "`horizon` must be >= 1, got 0"),
        ({"horizon": "26"}, TypeError, "`horizon` must be of type .*, got str '26'"),
        ({"world": "shop"}, ValueError, r"`world` must be a preset \(retail.*, got 'shop'"),
        ({"world": None}, TypeError, "`world` must be a preset name or a WorldSpec, got NoneType"),
    ],
)
def test_single_env_refuses_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        CampaignEnv(**kwargs)
    with pytest.raises(err, match=match):
        gym.make(ENV_ID, **kwargs)


def test_make_vec_refuses_bad_num_envs():
    with pytest.raises(ValueError, match="`num_envs` must be >= 1, got 0"):
        gym.make_vec(ENV_ID, num_envs=0)


def test_vector_step_before_reset_raises():
    with pytest.raises(RuntimeError, match=r"reset\(\)"):
        CampaignVectorEnv(2).step(np.zeros(2, dtype=np.int64))


def _static_columns_match_the_population(obs: np.ndarray, env) -> None:
    """The observation's segment one-hot and affinities are those of the current population."""
    sim, enc = env.simulator, env.encoder
    st = sim.state
    names = enc.feature_names
    seg_cols = [i for i, n in enumerate(names) if n.startswith("segment=")]
    aff_cols = [i for i, n in enumerate(names) if n.startswith("affinity=")]
    obs = np.atleast_2d(obs)
    np.testing.assert_array_equal(obs[:, seg_cols].argmax(axis=1), st.segment)
    np.testing.assert_allclose(obs[:, aff_cols], np.tanh(0.5 * st.affinity), F32_RTOL)


def test_vector_env_observations_follow_every_new_population():
    venv = CampaignVectorEnv(300, world="retail", horizon=2)
    obs, _ = venv.reset(seed=1)
    _static_columns_match_the_population(obs, venv)
    obs, _ = venv.reset(seed=2)  # an explicit reset draws new customers
    _static_columns_match_the_population(obs, venv)
    for _ in range(2):  # the second step ends the campaign and autoresets
        obs, *_ = venv.step(np.zeros(300, dtype=np.int64))
    assert venv.simulator.t == 0
    _static_columns_match_the_population(obs, venv)


def test_single_env_observation_follows_each_new_customer():
    env = CampaignEnv(world="retail", horizon=2)
    segments = set()
    for seed in range(40):
        obs, _ = env.reset(seed=seed)
        _static_columns_match_the_population(obs, env)
        segments.add(int(env.simulator.state.segment[0]))
    assert len(segments) > 1  # several customers of different segments were drawn
