"""The unit of work of an experiment: one agent, one seed -> a :class:`RunResult`.

:func:`run_one` trains a learner (or fits a baseline), exports its policy and evaluates it;
it writes nothing and returns plain data (numbers, numpy arrays, str, bytes), so it runs the
same in the serial runner, as a Ray task on another machine, or in a test. :func:`summarize`
(and :func:`runs_table`, :func:`curves_table`) turn a set of results into the experiment's
tables without looking at the order in which they were computed; :func:`write_run` writes a
run's exported policy where the serial and the Ray runner both put it.

Examples:
    >>> from campaignrl.experiments import ExperimentConfig
    >>> config = ExperimentConfig(
    ...     name="tiny", horizon=2, eval_customers=20, agents=[{"agent": "no-contact"}]
    ... )
    >>> result = run_one(config.agents[0], 0, config)
    >>> (result.agent, result.seed, result.customer_values.shape)
    ('no-contact', 0, (20,))
    >>> summarize([result], config)[["agent", "n_seeds", "eval_customers"]].values.tolist()
    [['no-contact', 1, 20]]
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from campaignrl._fs import ordinary_mode
from campaignrl.agents.baselines import make_baseline
from campaignrl.agents.evaluation import PolicyEvaluator
from campaignrl.agents.registry import empty_curve, make_agent
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.policies.artifacts import save_policy
from campaignrl.rollout import FeaturePolicy, mean_ci95, run_policy

if TYPE_CHECKING:
    from campaignrl.experiments import AgentSpec, ExperimentConfig

__all__ = [
    "EVAL_SEED_OFFSET",
    "RunResult",
    "curves_table",
    "order_results",
    "period_rewards",
    "policy_path",
    "run_one",
    "runs_table",
    "summarize",
    "write_run",
]

EVAL_SEED_OFFSET = 1_000_003
"""seed ``k``'s evaluation population is seeded ``EVAL_SEED_OFFSET + k``, shared by every
agent of that seed (common random numbers); its during-training evaluations use ``+ 1``"""
_RUN_COLUMNS = (
    "agent",
    "seed",
    "value_per_customer",
    "ci95_low",
    "ci95_high",
    "contact_rate",
    "train_seconds",
    "timesteps",
    "seconds",
)
"""the columns of ``runs.csv``, in order"""


@dataclass(frozen=True)
class RunResult:
    """What one (agent, seed) run produced: plain data, cheap to pickle and ship.

    Everything the experiment's tables, plots and policy folders need, and nothing that
    ties it to the process that made it (no agent, no env, no open file).
    """

    agent: str
    """the agent's label (:attr:`AgentSpec.name`): its row in the tables, its folder"""
    kind: str
    """the learner or baseline name (:attr:`AgentSpec.agent`)"""
    seed: int
    """the run's seed"""
    value_per_customer: float
    """mean profit per evaluation customer over the campaign"""
    ci95_low: float | None
    """low end of its normal 95% interval (``None`` with one customer)"""
    ci95_high: float | None
    """high end of its normal 95% interval"""
    contact_rate: float
    """share of customer-periods with a contact, on the evaluation population"""
    train_seconds: float
    """wall time of training (0 for baselines)"""
    timesteps: int
    """customer-steps trained (0 for baselines)"""
    seconds: float
    """wall time of the whole run: training, export and evaluation"""
    customer_values: np.ndarray
    """(eval_customers,) profit of each evaluation customer over the campaign"""
    period_rewards: np.ndarray
    """(horizon,) mean profit per evaluation customer in each period"""
    curve: dict[str, np.ndarray] | None = None
    """the learning curve by column (a learner's; ``None`` for a baseline)"""
    artifact: dict[str, bytes] = field(default_factory=dict)
    """the exported policy directory's files by name (empty for a baseline)"""

    def learning_curve(self) -> pd.DataFrame | None:
        """The learning curve as a table (``None`` for a baseline)."""
        if self.curve is None:
            return None
        return pd.DataFrame({k: pd.Series(v, dtype=v.dtype) for k, v in self.curve.items()})

    def row(self) -> dict[str, Any]:
        """The run's row of ``runs.csv``."""
        return {name: getattr(self, name) for name in _RUN_COLUMNS}


def run_one(
    agent: AgentSpec, seed: int, config: ExperimentConfig, *, progress: bool = False
) -> RunResult:
    """Train (or fit), export and evaluate ``agent`` with ``seed``; write nothing.

    A learner trains on ``agent.train_customers`` customers for its budget rounded up to
    whole campaigns (:meth:`ExperimentConfig.budget`), with ``config.training_evals``
    evaluations on a fixed population for its learning curve; its policy is exported as the
    decision service would load it, and that numpy policy is what gets evaluated. A baseline
    is fitted on its own pilot stream. Both are evaluated on the seed's evaluation population
    (``EVAL_SEED_OFFSET + seed``), the same for every agent. BLAS runs on one thread, as in
    the CLI: the same (agent, seed, config) gives the same result in any process.

    Args:
        agent: The contender; one of ``config.agents``.
        seed: The run's seed; one of ``config.seeds``.
        config: The experiment.
        progress: Show progress bars (training, evaluation).

    Returns:
        The run's :class:`RunResult`, policy files included.
    """
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        world = config.spec()
        eval_seed = EVAL_SEED_OFFSET + seed
        train_seconds, timesteps = 0.0, 0
        curve: pd.DataFrame | None = None
        artifact: dict[str, bytes] = {}
        evaluated: Any
        if agent.learns:
            env = CampaignVectorEnv(agent.train_customers, world=world, horizon=config.horizon)
            budget = config.budget(agent)  # rounded up to whole campaigns
            learner = make_agent(
                agent.agent,
                env,
                params=agent.params,
                total_timesteps=budget.timesteps if budget else 1,
                seed=seed,
            )
            curve = empty_curve()
            if budget is not None:
                evaluator = PolicyEvaluator.spread(
                    world,
                    config.horizon,
                    timesteps=budget.timesteps,
                    evaluations=config.training_evals,
                    n_customers=config.training_eval_customers,
                    seed=eval_seed + 1,
                )
                trained = learner.learn(budget.timesteps, progress=progress, evaluator=evaluator)
                curve = trained.learning_curve
                train_seconds, timesteps = trained.seconds, trained.timesteps
            policy = learner.policy()
            artifact = _export(policy, _training_metadata(agent, seed, config, timesteps))
            evaluated = FeaturePolicy(policy, agent.name)
        else:
            evaluated = make_baseline(agent.agent, **agent.params)
            evaluated.fit(world, config.horizon, np.random.default_rng([seed, 1]))
        res = run_policy(
            world,
            evaluated,
            n_customers=config.eval_customers,
            horizon=config.horizon,
            seed=eval_seed,
            progress=progress,
        )
    s = res.summary()
    return RunResult(
        agent=agent.name,
        kind=agent.agent,
        seed=seed,
        value_per_customer=s["value_per_customer"],
        ci95_low=s["ci95"][0],
        ci95_high=s["ci95"][1],
        contact_rate=s["contact_rate"],
        train_seconds=train_seconds,
        timesteps=timesteps,
        seconds=time.perf_counter() - started,
        customer_values=res.value_per_customer,
        period_rewards=res.reward_per_period,
        curve=None if curve is None else {c: curve[c].to_numpy() for c in curve.columns},
        artifact=artifact,
    )


def _training_metadata(
    agent: AgentSpec, seed: int, config: ExperimentConfig, timesteps: int
) -> dict[str, Any]:
    """What the exported policy's manifest says about how it was trained."""
    return {
        "experiment": config.name,
        "agent": agent.agent,
        "params": agent.params,
        "world": config.world,
        "world_overrides": config.world_overrides,
        "periods": config.horizon,
        "seed": seed,
        "timesteps": timesteps,
    }


def _export(policy: Any, training: dict[str, Any]) -> dict[str, bytes]:
    """The files ``save_policy`` writes for ``policy``, read back as bytes."""
    with tempfile.TemporaryDirectory(prefix="campaignrl-run-") as tmp:
        folder = save_policy(policy, Path(tmp) / "policy", training=training)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def policy_path(out_dir: str | os.PathLike[str], agent: str, seed: int) -> Path:
    """Where a run's policy goes: ``<out>/policies/<agent label>/seed<k>``."""
    return Path(out_dir) / "policies" / agent / f"seed{seed}"


def write_run(result: RunResult, out_dir: str | os.PathLike[str]) -> Path | None:
    """Write a run's exported policy to ``policies/<agent>/seed<k>`` under ``out_dir``.

    The folder is built beside its place and renamed in, so it is there whole or not at
    all (as ``save_policy`` does). A baseline has no files: nothing is written.

    Returns:
        The policy folder, or ``None`` for a baseline.

    Raises:
        FileExistsError: If the policy folder exists and is not empty.
    """
    if not result.artifact:
        return None
    target = policy_path(out_dir, result.agent, result.seed)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"`out_dir` policy folder {str(target)!r} exists and is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(tmp, ordinary_mode(directory=True))
        for name, data in result.artifact.items():
            if Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"`result.artifact` file names must be plain, got {name!r}")
            (tmp / name).write_bytes(data)
            os.chmod(tmp / name, ordinary_mode())
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def order_results(results: Sequence[RunResult], config: ExperimentConfig) -> list[RunResult]:
    """``results`` in the experiment's order (seeds, then agents), whatever order they came in.

    Raises:
        ValueError: If a run of ``config`` is missing or repeated, or a result is not one of
            its runs.
    """
    agents = {a.name: i for i, a in enumerate(config.agents)}
    seeds = {s: i for i, s in enumerate(config.seeds)}
    seen: dict[tuple[str, int], RunResult] = {}
    for r in results:
        if r.agent not in agents or r.seed not in seeds:
            raise ValueError(
                f"`results` hold a run ({r.agent!r}, seed {r.seed}) that experiment "
                f"{config.name!r} does not have"
            )
        if (r.agent, r.seed) in seen:
            raise ValueError(f"`results` hold run ({r.agent!r}, seed {r.seed}) twice")
        seen[(r.agent, r.seed)] = r
    missing = [(a.name, s) for s in config.seeds for a in config.agents if (a.name, s) not in seen]
    if missing:
        shown = ", ".join(f"({a!r}, seed {s})" for a, s in missing[:5])
        raise ValueError(f"`results` miss {len(missing)} run(s) of {config.name!r}: {shown}")
    return sorted(seen.values(), key=lambda r: (seeds[r.seed], agents[r.agent]))


def runs_table(results: Sequence[RunResult], config: ExperimentConfig) -> pd.DataFrame:
    """``runs.csv``: one row per agent and seed, in the experiment's order."""
    return pd.DataFrame([r.row() for r in order_results(results, config)])


def summarize(results: Sequence[RunResult], config: ExperimentConfig) -> pd.DataFrame:
    """``summary.csv``: one row per agent, best value first.

    Each agent's value is the mean over the evaluation customers of every seed pooled, with
    the normal 95% interval of that mean (:func:`~campaignrl.rollout.mean_ci95`); ``seed_sd``
    is the spread of the per-seed values. Pure: the same results in any order give the same
    table, to the last digit.

    Raises:
        ValueError: If ``results`` are not exactly the runs of ``config``.
    """
    ordered = order_results(results, config)
    runs = pd.DataFrame([r.row() for r in ordered])
    rows = []
    for a in config.agents:
        mine = [r for r in ordered if r.agent == a.name]
        values = np.concatenate([r.customer_values for r in mine])
        mean, lo, hi = mean_ci95(values)
        sub = runs[runs.agent == a.name]
        rows.append(
            {
                "agent": a.name,
                "kind": a.agent,
                "value_per_customer": mean,
                "ci95_low": lo,
                "ci95_high": hi,
                "seed_sd": float(sub.value_per_customer.std(ddof=1)) if len(sub) > 1 else 0.0,
                "contact_rate": float(sub.contact_rate.mean()),
                "train_seconds": float(sub.train_seconds.mean()),
                "timesteps": int(sub.timesteps.mean()),
                "n_seeds": len(sub),
                "eval_customers": int(values.shape[0]),
            }
        )
    return pd.DataFrame(rows).sort_values("value_per_customer", ascending=False)


def curves_table(results: Sequence[RunResult], config: ExperimentConfig) -> pd.DataFrame:
    """``learning_curves.csv``: every learner's curve with its ``agent`` and ``seed``."""
    curves = []
    for r in order_results(results, config):
        curve = r.learning_curve()
        if curve is not None:
            curves.append(curve.assign(agent=r.agent, seed=r.seed))
    return pd.concat(curves, ignore_index=True) if curves else empty_curve()


def period_rewards(results: Sequence[RunResult], config: ExperimentConfig) -> dict[str, Any]:
    """Each agent's mean profit per customer in each period, averaged over seeds."""
    ordered = order_results(results, config)
    return {
        a.name: np.mean([r.period_rewards for r in ordered if r.agent == a.name], axis=0)
        for a in config.agents
    }
