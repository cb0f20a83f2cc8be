"""Evaluation during training: fixed population, schedule, curves of every learner."""

import numpy as np
import pandas as pd
import pytest

from campaignrl.agents.baselines import make_baseline
from campaignrl.agents.evaluation import EVAL_COLUMNS, EvaluationSchedule, PolicyEvaluator
from campaignrl.agents.registry import make_agent, train_agent
from campaignrl.envs import CampaignVectorEnv
from campaignrl.policies import ConstantPolicy
from campaignrl.rollout import run_policy
from campaignrl.simulators.presets import get_world

HORIZON = 4


def no_contact_policy(env: CampaignVectorEnv) -> ConstantPolicy:
    scores = np.zeros(len(env.action_names))
    scores[0] = 1.0
    return ConstantPolicy(env.encoder.feature_names, env.action_names, scores)


def test_evaluator_value_is_the_rollout_on_its_fixed_population():
    world = get_world("fatigue")
    env = CampaignVectorEnv(10, world=world, horizon=HORIZON)
    evaluator = PolicyEvaluator(world, HORIZON, every=1, n_customers=500, seed=7)
    row = evaluator(no_contact_policy(env))
    # known answer: the no-contact baseline on the same seed meets the same customers
    baseline = run_policy(
        world, make_baseline("no-contact"), n_customers=500, horizon=HORIZON, seed=7
    )
    assert row["eval_value"] == pytest.approx(baseline.value_per_customer.mean(), rel=1e-12)
    assert row["eval_ci95_low"] < row["eval_value"] < row["eval_ci95_high"]
    # the same population every time: evaluating again gives the same figures
    assert evaluator(no_contact_policy(env)) == row
    # another seed is another population
    other = PolicyEvaluator(world, HORIZON, every=1, n_customers=500, seed=8)
    assert other(no_contact_policy(env))["eval_value"] != row["eval_value"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"every": 0}, r"`every` must be >= 1, got 0"),
        ({"n_customers": 1}, r"`n_customers` must be >= 2, got 1"),
        ({"horizon": 0}, r"`horizon` must be >= 1, got 0"),
        ({"seed": -1}, r"`seed` must be >= 0, got -1"),
    ],
)
def test_bad_evaluator_settings_are_refused_by_name(changes, match):
    settings = {"world": get_world("retail"), "horizon": 4, "every": 10, **changes}
    with pytest.raises(ValueError, match=match):
        PolicyEvaluator(**settings)


class CountingEvaluator(PolicyEvaluator):
    def __call__(self, policy):
        return dict(zip(EVAL_COLUMNS, (1.0, 0.0, 2.0), strict=True))


def test_schedule_evaluates_first_then_every_then_last():
    ev = CountingEvaluator(get_world("retail"), 4, every=250, n_customers=2)
    schedule = EvaluationSchedule(ev)
    rows = []
    for steps in range(100, 1100, 100):  # episode ends every 100 customer-steps
        rows.append({"timesteps": steps, **schedule.at_episode_end(steps, lambda: None)})
    schedule.finish(rows, lambda: None)
    evaluated = [r["timesteps"] for r in rows if not np.isnan(r["eval_value"])]
    # 100 (first), 400 and 700 (>= 250 after the last), 1000 (the end)
    assert evaluated == [100, 400, 700, 1000]
    # without an evaluator every row gets NaN and finish adds nothing
    none = EvaluationSchedule(None)
    row = none.at_episode_end(100, lambda: None)
    assert set(row) == set(EVAL_COLUMNS) and all(np.isnan(v) for v in row.values())


@pytest.mark.parametrize("name", ["ucb1", "qlearning", "ppo"])
def test_every_learner_writes_evaluations_into_its_curve(name):
    world = get_world("fatigue")
    env = CampaignVectorEnv(100, world=world, horizon=HORIZON)
    params = {"n_steps": HORIZON, "batch_size": 200, "n_epochs": 1} if name == "ppo" else {}
    total = 100 * HORIZON * 5
    agent = make_agent(name, env, params=params, total_timesteps=total, seed=0)
    evaluator = PolicyEvaluator(world, HORIZON, every=2 * 100 * HORIZON, n_customers=300, seed=9)
    result = train_agent(
        agent, env, total_timesteps=total, seed=0, progress=False, evaluator=evaluator
    )
    curve = result.learning_curve
    assert len(curve) == 5
    done = curve.dropna(subset=["eval_value"])
    assert done.index.tolist() == [0, 2, 4]  # first, every 2 campaigns, last
    # the last evaluation is the exported policy on the evaluator's population
    final = evaluator(agent.policy())
    assert curve.iloc[-1]["eval_value"] == pytest.approx(final["eval_value"], rel=1e-12)
    assert isinstance(curve, pd.DataFrame) and set(EVAL_COLUMNS) <= set(curve.columns)


def test_spread_places_evaluations_evenly_over_the_budget():
    world = get_world("retail")
    ev = PolicyEvaluator.spread(world, 4, timesteps=1000, evaluations=4, n_customers=10, seed=1)
    assert ev is not None and ev.every == 250 and ev.n_customers == 10 and ev.seed == 1
    none = PolicyEvaluator.spread(world, 4, timesteps=1000, evaluations=0, n_customers=10, seed=1)
    assert none is None
    with pytest.raises(ValueError, match=r"`evaluations` must be >= 0, got -1"):
        PolicyEvaluator.spread(world, 4, timesteps=1000, evaluations=-1, n_customers=10, seed=1)
