"""Running policies through a simulated population: values, intervals and decision logs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from float_bounds import U32

from campaignrl.agents.baselines import make_baseline
from campaignrl.envs.observation import ObservationEncoder
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.logs.schema import BOOL_OUTCOME_COLUMNS, OUTCOME_COLUMNS, REQUIRED_COLUMNS
from campaignrl.rollout import RolloutResult, mean_ci95, run_policy
from campaignrl.simulators.core import CustomerSimulator
from campaignrl.simulators.presets import get_world
from campaignrl.simulators.spec import WorldSpec

N, T = 400, 6


class LastAllowed:
    """Deterministic and observation-free: the highest-index allowed action."""

    def probabilities(self, obs, masks, sim):
        last = masks.shape[1] - 1 - np.argmax(masks[:, ::-1], axis=1)
        out = np.zeros(masks.shape)
        out[np.arange(masks.shape[0]), last] = 1.0
        return out


def _masks_from_log(log: pd.DataFrame, world: str = "retail") -> np.ndarray:
    """The action masks at decision time, rebuilt from the logged context features alone."""
    spec = get_world(world)
    cat = spec.catalog
    reach = log[[f"reachable={c.name}" for c in cat.channels]].to_numpy() > 0.5
    under_cap = log["cap_used"].to_numpy() < 1.0
    masks = np.empty((len(log), cat.n_actions), dtype=bool)
    masks[:, 0] = True
    masks[:, 1:] = np.tile(reach & under_cap[:, None], cat.n_offers)
    return masks


def _action_index(log: pd.DataFrame, world: str = "retail") -> np.ndarray:
    return get_world(world).catalog.action_indices(list(log["action"]))


# ---------------------------------------------------------------------- mean_ci95


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # sd = sqrt(5/3) = 1.2909944; half = 1.96 * sd / 2 = 1.2651745
        ([1.0, 2.0, 3.0, 4.0], (2.5, 1.2348255, 3.7651745)),
        # sd = 0: a point interval
        ([2.0, 2.0, 2.0], (2.0, 2.0, 2.0)),
        # mean 0, sd = sqrt(2), n = 2: half = 1.96
        ([-1.0, 1.0], (0.0, -1.96, 1.96)),
        # mean 10, sd = sqrt(200/3) = 8.1649658, n = 4: half = 8.0016665
        ([0.0, 10.0, 10.0, 20.0], (10.0, 1.9983335, 18.0016665)),
    ],
)
def test_mean_ci95_hand_computed(values, expected):
    got = mean_ci95(np.array(values))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert all(isinstance(x, float) for x in got)


def test_mean_ci95_one_value_has_an_unbounded_interval():
    assert mean_ci95(np.array([3.0])) == (3.0, -np.inf, np.inf)


def test_mean_ci95_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = rng.lognormal(0.0, 0.5, size=(4_000, 400))  # right-skewed, like profit
    true_mean = np.exp(0.5**2 / 2)
    hits = sum(lo <= true_mean <= hi for _, lo, hi in map(mean_ci95, draws))
    # Binomial(4000, 0.95): sd 13.8; allow a little under-coverage from the skew.
    assert 0.93 * 4_000 < hits < 0.97 * 4_000


# ---------------------------------------------------------------------- values


def test_result_shapes_and_summary():
    res = run_policy("retail", make_baseline("random"), n_customers=N, horizon=T, seed=1)
    assert isinstance(res, RolloutResult)
    assert res.value_per_customer.shape == (N,)
    assert res.reward_per_period.shape == (T,)
    assert res.log is None
    # Sum over periods of the mean = mean over customers of the sum.
    assert res.reward_per_period.sum() == pytest.approx(res.value_per_customer.mean(), rel=1e-12)
    s = res.summary()
    mean, lo, hi = mean_ci95(res.value_per_customer)
    assert s["value_per_customer"] == mean
    assert s["ci95"] == [lo, hi]
    assert s["n_customers"] == N and s["periods"] == T
    assert s["contact_rate"] == res.contact_rate
    assert 0.0 < res.contact_rate < 1.0


def test_same_seed_same_results_other_seed_differs():
    policy = make_baseline("random")
    kwargs = dict(n_customers=N, horizon=T, epsilon=0.1, record=True)
    a = run_policy("retail", policy, seed=7, **kwargs)
    b = run_policy("retail", policy, seed=7, **kwargs)
    c = run_policy("retail", policy, seed=8, **kwargs)
    assert np.array_equal(a.value_per_customer, b.value_per_customer)
    assert np.array_equal(a.reward_per_period, b.reward_per_period)
    assert a.contact_rate == b.contact_rate
    pd.testing.assert_frame_equal(a.log, b.log)
    assert not np.array_equal(a.value_per_customer, c.value_per_customer)
    assert not np.array_equal(a.log["action"].to_numpy(), c.log["action"].to_numpy())


def test_no_contact_contacts_nobody():
    res = run_policy("retail", make_baseline("no-contact"), n_customers=N, horizon=T, seed=2)
    assert res.contact_rate == 0.0


def test_world_spec_and_preset_name_give_the_same_run():
    policy = make_baseline("myopic-oracle")
    a = run_policy("fatigue", policy, n_customers=N, horizon=T, seed=3)
    b = run_policy(get_world("fatigue"), policy, n_customers=N, horizon=T, seed=3)
    assert np.array_equal(a.value_per_customer, b.value_per_customer)


# ---------------------------------------------------------------------- decision logs


@pytest.fixture(scope="module")
def rfm_log_run():
    return run_policy(
        "retail",
        make_baseline("rfm-rules"),
        n_customers=N,
        horizon=T,
        seed=4,
        epsilon=0.2,
        record=True,
        policy_version="rfm+eps0.2",
    )


def test_log_schema(rfm_log_run):
    log = rfm_log_run.log
    features = ObservationEncoder(get_world("retail"), T).feature_names
    assert len(log) == N * T
    masks = [f"allowed={a}" for a in get_world("retail").catalog.action_names]
    assert list(log.columns) == [*REQUIRED_COLUMNS, *OUTCOME_COLUMNS, *masks, *features]
    assert log["decision_id"].is_unique
    assert log["propensity"].gt(0.0).all() and log["propensity"].le(1.0).all()
    assert set(log["action"]) <= set(get_world("retail").catalog.action_names)
    assert (log["policy_version"] == "rfm+eps0.2").all()
    assert log["episode_id"].nunique() == N
    for _, episode in log.groupby("episode_id"):
        assert sorted(episode["step"]) == list(range(T))
        assert episode["customer_id"].nunique() == 1
        ts = episode.sort_values("step")["timestamp"]
        assert (ts.diff().dropna() == pd.Timedelta(days=7)).all()
    assert str(log["timestamp"].dt.tz) == "UTC"
    assert log[list(features)].abs().le(1.0).all().all()


def test_logged_propensity_is_the_policy_probability(rfm_log_run):
    """rfm-rules reads only the observation, so its probabilities can be recomputed from the
    logged context: with epsilon, (1 - eps) + eps / k for its choice and eps / k otherwise."""
    log, eps = rfm_log_run.log, 0.2
    spec = get_world("retail")
    obs = log[list(ObservationEncoder(spec, T).feature_names)].to_numpy(np.float32)
    masks = _masks_from_log(log)
    sim = CustomerSimulator(spec, len(log), T)  # gives the rules the spec and horizon only
    greedy = make_baseline("rfm-rules").probabilities(obs, masks, sim).argmax(axis=1)
    k = masks.sum(axis=1)
    action = _action_index(log)
    assert masks[np.arange(len(log)), action].all(), "a logged action was not allowed"
    expected = np.where(action == greedy, (1 - eps) + eps / k, eps / k)
    np.testing.assert_allclose(log["propensity"], expected, rtol=1e-12, atol=0)
    # Both kinds of row occur: exploration happened and the rules were followed.
    assert (action == greedy).any() and (action != greedy).any()


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0])
def test_logged_propensity_deterministic_policy(eps):
    res = run_policy(
        "retail", LastAllowed(), n_customers=N, horizon=T, seed=5, epsilon=eps, record=True
    )
    log = res.log
    masks = _masks_from_log(log)
    k = masks.sum(axis=1)
    greedy = masks.shape[1] - 1 - np.argmax(masks[:, ::-1], axis=1)
    action = _action_index(log)
    expected = np.where(action == greedy, (1 - eps) + eps / k, eps / k)
    np.testing.assert_allclose(log["propensity"], expected, rtol=1e-12, atol=0)
    if eps == 0.0:
        assert np.array_equal(action, greedy)
        assert (log["propensity"] == 1.0).all()


@pytest.mark.parametrize("policy", ["no-contact", "myopic-oracle", "random"])
def test_epsilon_one_logs_uniform_propensities(policy):
    res = run_policy(
        "fatigue", make_baseline(policy), n_customers=N, horizon=T, seed=6, epsilon=1, record=True
    )
    log = res.log
    k = _masks_from_log(log, "fatigue").sum(axis=1)
    np.testing.assert_allclose(log["propensity"], 1.0 / k, rtol=1e-12, atol=0)
    assert len(np.unique(k)) > 1


def test_logged_rewards_add_up_to_the_values(rfm_log_run):
    log = rfm_log_run.log
    per_episode = log.groupby("episode_id")["reward"].sum().sort_index()
    np.testing.assert_allclose(per_episode.to_numpy(), rfm_log_run.value_per_customer, atol=1e-9)
    per_step = log.groupby("step")["reward"].mean().sort_index()
    np.testing.assert_allclose(per_step.to_numpy(), rfm_log_run.reward_per_period, atol=1e-9)
    assert rfm_log_run.contact_rate == pytest.approx((log["action"] != "no_contact").mean())


def test_logged_context_is_the_observation_before_the_decision():
    """Period 0's context is the freshly reset population: full cap, time left = 1."""
    res = run_policy(
        "retail", make_baseline("random"), n_customers=N, horizon=T, seed=9, record=True
    )
    log = res.log
    first = log[log["step"] == 0]
    assert (first["cap_used"] == 0.0).all()
    assert (first["fatigue"] == 0.0).all()
    # logged from the float32 observation: one rounding of the float64 value (u = 2^-24), and
    # float64's own (2^-53)
    np.testing.assert_allclose(log["periods_left"], (T - log["step"]) / T, rtol=2 * U32)


def test_record_false_keeps_no_log_and_same_values():
    policy = make_baseline("random")
    a = run_policy("retail", policy, n_customers=N, horizon=T, seed=10)
    b = run_policy("retail", policy, n_customers=N, horizon=T, seed=10, record=True)
    assert a.log is None
    assert np.array_equal(a.value_per_customer, b.value_per_customer)


# ---------------------------------------------------------------------- outcome columns


def _with_segments(world: str, **changes) -> WorldSpec:
    """A preset with every segment changed the same way."""
    spec = get_world(world)
    segments = tuple(dataclasses.replace(seg, **changes) for seg in spec.segments)
    return spec.replace(segments=segments)


def _explored_log(seed: int, periods: int = T, eps: float = 0.5):
    """An rfm-rules log of ``retail`` with ``eps`` exploration: every kind of outcome occurs."""
    policy = make_baseline("rfm-rules")
    res = run_policy(
        "retail", policy, n_customers=N, horizon=periods, seed=seed, epsilon=eps, record=True
    )
    assert res.log is not None
    return res, res.log


def test_outcome_columns_are_what_the_simulator_drew():
    """Replaying the logged actions in a fresh env with the run's seed draws the same step:
    every outcome column is the simulator's ``StepResult``, row for row."""
    res, log = _explored_log(seed=12)
    env = CampaignVectorEnv(N, world="retail", horizon=T)
    env.reset(seed=12)  # the world's draws come from the env's Generator alone
    actions = _action_index(log)
    steps = log["step"].to_numpy()
    for t in range(T):
        rows = steps == t
        result = env.simulator.step(actions[rows], env.np_random)
        np.testing.assert_array_equal(result.reward, log.loc[rows, "reward"])
        np.testing.assert_array_equal(result.action, actions[rows])  # nothing was masked
        for col, field in [
            ("opened", "opened"),
            ("purchased", "purchased"),
            ("basket_value", "basket"),
            ("unsubscribed", "unsubscribed"),
            ("churned", "churned"),
        ]:
            np.testing.assert_array_equal(log.loc[rows, col].to_numpy(), getattr(result, field))
    # totals: every kind of outcome happened, and the log counts them as the steps did
    assert all(log[col].any() for col in OUTCOME_COLUMNS), log[list(OUTCOME_COLUMNS)].sum()
    np.testing.assert_allclose(log["reward"].sum(), res.value_per_customer.sum(), rtol=1e-12)


def test_outcome_columns_obey_their_definitions():
    _, log = _explored_log(seed=13, periods=10)
    for col in BOOL_OUTCOME_COLUMNS:
        assert log[col].dtype == bool
    idle = (log["action"] == "no_contact").to_numpy()
    assert idle.any() and (~idle).any()
    # no contact: nothing to open, no channel to opt out of
    assert not log.loc[idle, "opened"].any()
    assert not log.loc[idle, "unsubscribed"].any()
    # a basket exactly when there is a purchase (lognormal baskets are > 0)
    bought = log["purchased"].to_numpy()
    assert (log.loc[~bought, "basket_value"] == 0.0).all()
    assert (log.loc[bought, "basket_value"] > 0.0).all()
    # churn: once per customer at most, never in a period with a purchase, and after it the
    # customer neither buys nor opens
    by_episode = log.sort_values(["episode_id", "step"]).groupby("episode_id")
    assert by_episode["churned"].sum().max() == 1
    assert not (log["churned"] & log["purchased"]).any()
    gone = (
        by_episode["churned"].cumsum().to_numpy()
        - log.sort_values(["episode_id", "step"])["churned"].to_numpy()
    )  # churned in an earlier period
    later = log.sort_values(["episode_id", "step"])[gone > 0]
    assert len(later) > 0
    assert not later["purchased"].any() and not later["opened"].any()


def test_an_opt_out_closes_the_channel_in_later_periods():
    _, log = _explored_log(seed=14, periods=10, eps=1.0)  # uniform: many sends, many opt-outs
    spec = get_world("retail")
    out = log[log["unsubscribed"]]
    assert len(out) > 0
    indexed = log.set_index(["episode_id", "step"])
    for episode, step, action in out[["episode_id", "step", "action"]].itertuples(index=False):
        channel = action.split("@")[1]
        later = indexed.loc[episode].loc[step + 1 :]
        cols = [f"allowed={o.name}@{channel}" for o in spec.catalog.offers]
        assert not later[cols].to_numpy().any()
        assert not later["action"].str.endswith("@" + channel).any()


def test_the_logged_reward_is_rebuilt_from_the_outcomes():
    """``reward = margin * basket - redeemed * (discount * basket + fixed) - cost`` with
    ``redeemed = opened & purchased``: the outcome columns explain every reward."""
    _, log = _explored_log(seed=15, periods=8)
    spec = get_world("retail")
    w = spec.arrays()
    a = _action_index(log)
    o, c = np.maximum(w.action_offer[a], 0), np.maximum(w.action_channel[a], 0)
    basket = log["basket_value"].to_numpy()
    redeemed = (log["opened"] & log["purchased"]).to_numpy()
    cost = np.where(a > 0, w.channel_cost[c], 0.0)
    terms = (
        spec.margin_rate * basket,
        redeemed * w.offer_discount[o] * basket,
        redeemed * w.offer_fixed_cost[o],
        cost,
    )
    rebuilt = terms[0] - terms[1] - terms[2] - cost
    # float64: each of the ~6 operations rounds by at most 2^-53 of the largest term
    bound = 8 * 2.0**-53 * np.maximum.reduce([np.abs(x) for x in terms])
    assert (np.abs(rebuilt - log["reward"].to_numpy()) <= bound).all()
    assert redeemed.any() and (log["purchased"] & ~log["opened"]).any()  # both kinds of buyer


def test_a_world_where_nothing_is_opened_logs_no_opens():
    world = _with_segments("retail", open_rates=(0.0, 0.0, 0.0))
    res = run_policy(world, make_baseline("random"), n_customers=N, horizon=T, seed=16, record=True)
    log = res.log
    assert (log["action"] != "no_contact").mean() > 0.5
    assert not log["opened"].any()
    # buyers are organic only, and a contact earns its cost and nothing else
    assert log["purchased"].any()
    spec = world
    w = spec.arrays()
    a = _action_index(log)
    cost = np.where(a > 0, w.channel_cost[np.maximum(w.action_channel[a], 0)], 0.0)
    expected = spec.margin_rate * log["basket_value"].to_numpy() - cost
    bound = 4 * 2.0**-53 * (np.abs(expected) + cost)
    assert (np.abs(expected - log["reward"].to_numpy()) <= bound).all()


def test_a_world_without_organic_buying_sells_only_to_openers():
    world = _with_segments("retail", organic_rate=0.0)
    res = run_policy(world, make_baseline("random"), n_customers=N, horizon=T, seed=17, record=True)
    log = res.log
    assert log["purchased"].any()
    assert (log.loc[log["purchased"], "opened"]).all()
    assert not log.loc[log["action"] == "no_contact", "purchased"].any()


# ---------------------------------------------------------------------- bad input

BAD_RUN_ARGS = [
    ({"n_customers": 0}, ValueError, r"`n_customers` must be >= 1, got 0"),
    ({"n_customers": 2.5}, TypeError, r"`n_customers` must be of type int, got float 2.5"),
    ({"horizon": 0}, ValueError, r"`horizon` must be >= 1, got 0"),
    ({"seed": -1}, ValueError, r"`seed` must be >= 0, got -1"),
    ({"seed": None}, TypeError, r"`seed` must be of type int, got NoneType None"),
    ({"epsilon": 1.5}, ValueError, r"`epsilon` must be <= 1.0, got 1.5"),
    ({"epsilon": -0.1}, ValueError, r"`epsilon` must be >= 0.0, got -0.1"),
    ({"epsilon": float("nan")}, ValueError, r"`epsilon` must be finite"),
]


@pytest.mark.parametrize(("changes", "err", "match"), BAD_RUN_ARGS)
def test_run_policy_refuses_bad_arguments_by_name(changes, err, match):
    kwargs = dict(n_customers=10, horizon=2, seed=0, epsilon=0.0) | changes
    with pytest.raises(err, match=match):
        run_policy("retail", make_baseline("random"), **kwargs)


def test_run_policy_refuses_unknown_world():
    with pytest.raises(ValueError, match=r"`world` must be a preset \(retail.*got 'shop'"):
        run_policy("shop", make_baseline("random"), n_customers=10, horizon=2, seed=0)


# ---------------------------------------------------------------------- acceptance


def test_restraint_pays_in_the_fatigue_world():
    """Issue acceptance: over 26 periods the restrained oracle beats the myopic one."""
    kw = dict(n_customers=20_000, horizon=26, seed=0)
    restrained = run_policy("fatigue", make_baseline("restrained-oracle"), **kw)
    myopic = run_policy("fatigue", make_baseline("myopic-oracle"), **kw)
    _, r_lo, _ = mean_ci95(restrained.value_per_customer)
    _, _, m_hi = mean_ci95(myopic.value_per_customer)
    assert r_lo > m_hi, (
        mean_ci95(restrained.value_per_customer),
        mean_ci95(myopic.value_per_customer),
    )
    assert restrained.contact_rate < myopic.contact_rate


def test_myopic_oracle_beats_random_and_rules_in_retail():
    kw = dict(n_customers=20_000, horizon=26, seed=0)
    _, o_lo, _ = mean_ci95(
        run_policy("retail", make_baseline("myopic-oracle"), **kw).value_per_customer
    )
    for name in ("random", "rfm-rules"):
        _, _, hi = mean_ci95(run_policy("retail", make_baseline(name), **kw).value_per_customer)
        assert o_lo > hi, name


# ---------------------------------------------------------------------- policy fit warnings


@pytest.mark.parametrize(
    ("training", "world", "horizon", "needles"),
    [
        ({"world": "retail", "periods": 26}, "retail", 26, []),
        ({}, "fatigue", 52, []),  # nothing recorded: nothing to check
        ({"world": "retail", "periods": 26}, "fatigue", 26, ["world 'retail'", "on 'fatigue'"]),
        ({"world": "retail", "periods": 26}, "retail", 52, ["26-period", "longer one (52"]),
        ({"world": "retail", "horizon": 26}, "retail", 13, ["26-period", "shorter one (13"]),
        ({"world": "retail", "periods": True}, "retail", 13, []),  # not a length
        (
            {"world": "retail", "world_overrides": {"margin_rate": 0.3}},
            "retail",
            26,
            ["other parameters (margin_rate differs)"],
        ),
        ({"world": "retail"}, get_world("retail", margin_rate=0.3), 26, ["margin_rate differs"]),
        ({"world": "retail", "world_overrides": {"margin_rate": 0.3}}, None, 26, []),
        ({"world": "no-such-world"}, "retail", 26, ["world 'no-such-world'"]),
    ],
)
def test_check_policy_fit_warns_on_another_world_or_campaign_length(
    training, world, horizon, needles
):
    from campaignrl.rollout import check_policy_fit

    if world is None:  # the same modified world it was trained on
        world = get_world("retail", margin_rate=0.3)
    warnings = check_policy_fit(training, world, horizon)
    assert len(warnings) == (1 if needles else 0), warnings
    for needle in needles:
        assert needle in warnings[0], (needle, warnings)


@pytest.mark.parametrize(
    ("args", "err", "match"),
    [
        (([], "retail", 26), TypeError, "`training` must be a mapping, got list"),
        (({}, 3, 26), TypeError, "`world` must be a preset name or a WorldSpec, got int"),
        (({}, "retail", 0), ValueError, "`horizon` must be >= 1, got 0"),
    ],
)
def test_check_policy_fit_refuses_bad_arguments(args, err, match):
    from campaignrl.rollout import check_policy_fit

    with pytest.raises(err, match=match):
        check_policy_fit(*args)


def test_run_policy_progress_bar_says_what_it_simulates(monkeypatch, capsys):
    from campaignrl._progress import progress_label

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws bars only on a terminal
    with progress_label("ucb1, seed 0"):
        run_policy("retail", LastAllowed(), n_customers=50, horizon=2, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "ucb1, seed 0: simulating 50 customers" in err


def test_check_policy_fit_gives_one_warning_per_mismatch():
    from campaignrl.rollout import check_policy_fit

    warnings = check_policy_fit({"world": "retail", "periods": 26}, "fatigue", 52)
    assert [w.split(":")[0] for w in warnings] == [
        "the policy was trained on world 'retail' and is used on 'fatigue'",
        "the policy was trained on 26-period campaigns and is used on a longer one (52 periods)",
    ]
