"""Experiments: a YAML config -> trained agents and baselines -> summary, report and plots.

A config names the world, the agents with their settings and training budgets, the seeds and
the evaluation size. For every seed, each learner is trained on its own population and its
exported policy (numpy, as the decision service would run it) is evaluated with the baselines
on one shared evaluation population (common random numbers). Results pool the evaluation
customers over seeds; seeds make a run repeatable.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from campaignrl.agents.baselines import baseline_names, make_baseline
from campaignrl.agents.evaluation import PolicyEvaluator
from campaignrl.agents.registry import LEARNERS, empty_curve, make_agent, train_agent
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.plots import plot_learning_curves, plot_policy_comparison
from campaignrl.policies.artifacts import save_policy
from campaignrl.rollout import FeaturePolicy, mean_ci95, run_policy
from campaignrl.simulators.presets import get_world, world_names

__all__ = ["AgentSpec", "ExperimentConfig", "load_config", "run_experiment"]


class AgentSpec(BaseModel):
    """One contender: a learner with its settings and budget, or a baseline."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="learner or baseline name")
    label: str | None = Field(default=None, description="name in tables (default: agent)")
    timesteps: int = Field(default=0, ge=0, description="training budget, customer-steps")
    train_customers: int = Field(default=10_000, ge=1, description="customers trained on")
    params: dict[str, Any] = Field(default_factory=dict, description="the agent's settings")

    @field_validator("agent")
    @classmethod
    def _known(cls, value: str) -> str:
        known = (*LEARNERS, *baseline_names())
        if value not in known:
            raise ValueError(f"unknown agent {value!r}; agents are {', '.join(known)}")
        return value

    @property
    def name(self) -> str:
        """Label in tables."""
        return self.label or self.agent

    @property
    def learns(self) -> bool:
        """Whether this is a learner (trained) rather than a baseline."""
        return self.agent in LEARNERS


class ExperimentConfig(BaseModel):
    """An experiment file (YAML). Unknown keys are refused by name."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="experiment name")
    world: str = Field(default="retail", description="preset world")
    world_overrides: dict[str, Any] = Field(default_factory=dict, description="WorldSpec fields")
    horizon: int = Field(default=26, ge=1, description="periods per campaign")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    eval_customers: int = Field(default=50_000, ge=2, description="customers per evaluation")
    training_evals: int = Field(
        default=10,
        ge=0,
        description="evaluations of each learner during training, on a fixed population "
        "(0: none); they make the learning curves",
    )
    training_eval_customers: int = Field(
        default=5_000, ge=2, description="customers of the during-training evaluations"
    )
    agents: list[AgentSpec] = Field(min_length=1)

    @field_validator("world")
    @classmethod
    def _world(cls, value: str) -> str:
        if value not in world_names():
            raise ValueError(f"unknown world {value!r}; worlds are {', '.join(world_names())}")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(s < 0 for s in value) or len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct non-negative integers, got {value}")
        return value

    def spec(self) -> Any:
        """The world, overrides applied and validated."""
        return get_world(self.world, **self.world_overrides)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML; errors name the key and the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"experiment file {str(p)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"experiment file {str(p)!r} is not valid YAML: {exc}") from None
    try:
        config = ExperimentConfig.model_validate(raw)
        names = [a.name for a in config.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent labels must be unique, got {names}")
        config.spec()
        return config
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{where}: {msg}")
        raise ValueError(f"experiment file {str(p)!r}: " + "; ".join(lines)) from None


def run_experiment(
    config: ExperimentConfig, out: str | Path, *, progress: bool = True
) -> pd.DataFrame:
    """Run every agent for every seed; write the results to ``out``; return the summary.

    Writes ``config.json``, ``runs.csv`` (one row per agent and seed), ``summary.csv`` (one row
    per agent: value per customer with a 95% interval pooled over seeds, training time...),
    ``learning_curves.csv``, ``values.png``, ``learning_curves.png``, ``report.md`` and each
    learner's exported policy under ``policies/<label>/seed<k>``.
    """
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.model_dump(), indent=2) + "\n")
    spec = config.spec()
    runs, curves = [], []
    per_customer: dict[str, list[np.ndarray]] = {a.name: [] for a in config.agents}
    per_period: dict[str, list[np.ndarray]] = {a.name: [] for a in config.agents}
    for seed in config.seeds:
        eval_seed = 1_000_003 + seed  # the evaluation population of this seed, shared by all
        for agent_spec in config.agents:
            started = time.perf_counter()
            train_seconds, timesteps = 0.0, 0
            if agent_spec.learns:
                env = CampaignVectorEnv(
                    agent_spec.train_customers, world=spec, horizon=config.horizon
                )
                agent = make_agent(
                    agent_spec.agent,
                    env,
                    params=agent_spec.params,
                    total_timesteps=max(agent_spec.timesteps, 1),
                    seed=seed,
                )
                if agent_spec.timesteps > 0:
                    evaluator = PolicyEvaluator.spread(
                        spec,
                        config.horizon,
                        timesteps=agent_spec.timesteps,
                        evaluations=config.training_evals,
                        n_customers=config.training_eval_customers,
                        seed=eval_seed + 1,
                    )
                    result = train_agent(
                        agent,
                        env,
                        total_timesteps=agent_spec.timesteps,
                        seed=seed,
                        progress=progress,
                        evaluator=evaluator,
                    )
                    curve = result.learning_curve
                    train_seconds, timesteps = result.seconds, result.timesteps
                else:
                    curve = empty_curve()
                policy = agent.policy()
                save_policy(
                    policy,
                    out_dir / "policies" / agent_spec.name / f"seed{seed}",
                    training={
                        "experiment": config.name,
                        "agent": agent_spec.agent,
                        "params": agent_spec.params,
                        "world": config.world,
                        "seed": seed,
                        "timesteps": timesteps,
                    },
                    overwrite=True,
                )
                evaluated: Any = FeaturePolicy(policy, agent_spec.name)
                curves.append(curve.assign(agent=agent_spec.name, seed=seed))
            else:
                evaluated = make_baseline(agent_spec.agent, **agent_spec.params)
                evaluated.fit(spec, config.horizon, np.random.default_rng([seed, 1]))
            res = run_policy(
                spec,
                evaluated,
                n_customers=config.eval_customers,
                horizon=config.horizon,
                seed=eval_seed,
                progress=progress,
            )
            s = res.summary()
            per_customer[agent_spec.name].append(res.value_per_customer)
            per_period[agent_spec.name].append(res.reward_per_period)
            runs.append(
                {
                    "agent": agent_spec.name,
                    "seed": seed,
                    "value_per_customer": s["value_per_customer"],
                    "ci95_low": s["ci95"][0],
                    "ci95_high": s["ci95"][1],
                    "contact_rate": s["contact_rate"],
                    "train_seconds": train_seconds,
                    "timesteps": timesteps,
                    "seconds": time.perf_counter() - started,
                }
            )
    runs_df = pd.DataFrame(runs)
    runs_df.to_csv(out_dir / "runs.csv", index=False)
    rows = []
    for a in config.agents:
        values = np.concatenate(per_customer[a.name])
        mean, lo, hi = mean_ci95(values)
        sub = runs_df[runs_df.agent == a.name]
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
    summary = pd.DataFrame(rows).sort_values("value_per_customer", ascending=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    curve_df = pd.concat(curves, ignore_index=True) if curves else empty_curve()
    curve_df.to_csv(out_dir / "learning_curves.csv", index=False)
    names = [a.name for a in config.agents]
    by_name = summary.set_index("agent")
    plot_policy_comparison(
        names,
        [float(by_name.loc[n, "value_per_customer"]) for n in names],
        [float(by_name.loc[n, "ci95_low"]) for n in names],
        [float(by_name.loc[n, "ci95_high"]) for n in names],
        [np.mean(per_period[n], axis=0) for n in names],
        out_dir / "values.png",
        f"{config.name}: {config.world}, {config.eval_customers:,} customers x "
        f"{len(config.seeds)} seed(s), {config.horizon} periods",
    )
    plot_learning_curves(
        curve_df, out_dir / "learning_curves.png", f"{config.name}: learning curves"
    )
    _write_report(config, summary, out_dir)
    return summary


def _write_report(config: ExperimentConfig, summary: pd.DataFrame, out_dir: Path) -> None:
    lines = [
        f"# Experiment `{config.name}`",
        "",
        f"World `{config.world}`, {config.horizon} periods, seeds {config.seeds}, "
        f"{config.eval_customers:,} evaluation customers per seed. Value = mean profit per "
        "customer over the campaign; 95% interval over the pooled evaluation customers.",
        "",
        "| agent | value / customer | 95% CI | contact rate | training (s) | timesteps |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary.itertuples():
        lines.append(
            f"| {r.agent} | {r.value_per_customer:.2f} | [{r.ci95_low:.2f}, {r.ci95_high:.2f}] "
            f"| {r.contact_rate:.0%} | {r.train_seconds:.1f} | {r.timesteps:,} |"
        )
    lines += ["", "![values](values.png)", "", "![learning curves](learning_curves.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
