"""Accuracy of the OPE estimators on simulator logs: relative error and interval coverage.

    python benchmarks/ope_accuracy.py [--world retail] [--periods 8] [--epsilon 0.3]
        [--sizes 10000,100000,1000000] [--seeds 50]
        [--seq-sizes 10000,100000] [--seq-seeds 50] [--gamma 1.0]
        [--interval studentized|bootstrap|normal] [--bootstrap 1000] [--cluster auto|row]
        [--truth-customers 4000000] [--truth-cache truth.json]
        [--estimators ipw,snipw,dr,...] [--json out.json]

Logging: epsilon-greedy around ``rfm-rules`` (epsilon 0.3, uniform over allowed actions), run
directly on ``CampaignVectorEnv``: ``size / periods`` customers for ``periods`` weeks. At every
step the probability tables ``(n, A)`` of the target policies are computed from the simulator
(the oracles read its hidden state) and kept with the log.

Targets (``--targets``): ``myopic-oracle``, ``restrained-oracle``, ``static-best``, ``random``,
``no-contact``; ``name+eps<E>`` mixes ``E`` uniform exploration into a baseline (a stochastic
target with better overlap, e.g. ``myopic-oracle+eps0.5``).

Truths, from simulating the same world with other seeds:

* bandit estimators estimate the target's expected reward per decision in the states the
  LOGGING policy visits, ``E_{s ~ d_b}[sum_a pi_e(a | s) r(s, a)]``: the truth is that mean
  over a large logging run (``--truth-customers``), with the simulator's exact
  ``expected_reward()``; equivalently, the on-policy one-step value of the target from the
  logged states;
* sequential estimators estimate the target's expected discounted return per episode: the
  truth is an on-policy run of the target (``--truth-customers`` customers). Trajectory logs
  are cut at a random length (uniform on 1..periods, independent of the actions) so that
  episodes have DIFFERENT LENGTHS; the truth then weights period ``t``'s on-policy mean
  reward by the share of episodes that last beyond ``t``.

Reports, per size, estimator and target: mean relative error ``|V_hat - V| / |V|`` over
seeds and the share of seeds whose 95% interval covers ``V`` (the JSON also has the mean
interval width and the share of seeds whose interval lies wholly below or above ``V``).
Bandit intervals default to the studentized bootstrap (the estimators' default), by customer
(``--cluster auto``: a customer's ``periods`` decisions are correlated, so whole customers
are resampled); sequential estimators have no studentized interval and use the percentile
bootstrap over episodes then. Each truth is printed with its standard error: coverage is
judged against that one figure, so it must be far more precise than the largest log.

Reward model (DM, DR family): cross-fitted ridge on ``[onehot(action), features]``; Q-model
(SDR, FQE): cross-fitted per-step ridge FQE on ``onehot(a) (x) [1, features]``
(``--q-folds`` folds, default 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import Ridge

from campaignrl.agents.baselines import make_baseline
from campaignrl.envs.vector import CampaignVectorEnv
from campaignrl.logs.io import LoggedData
from campaignrl.ope import DM, DR, IPS, SNDR, SNIPS, CrossFittedRewardModel, DRos, SwitchDR
from campaignrl.ope.sequential import FQE, PDIS, WPDIS, FittedQEvaluation, SequentialDR
from campaignrl.policies.sampling import epsilon_mix, sample_actions
from campaignrl.rollout import run_policy
from campaignrl.simulators.presets import get_world

TARGETS = ("myopic-oracle", "restrained-oracle", "static-best", "random", "no-contact")
BANDIT = (IPS(), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau=20.0), DRos(lambda_=100.0))


@dataclass
class Run:
    """One simulated log with the targets' probabilities at every row."""

    data: LoggedData
    targets: dict[str, np.ndarray]  # name -> (n, A)
    expected: dict[str, np.ndarray]  # name -> (n,) sum_a pi_e(a|s) E[r | s, a]
    customer: np.ndarray
    step: np.ndarray


class Softened:
    """A baseline mixed with ``epsilon`` uniform exploration over allowed actions."""

    def __init__(self, policy: Any, epsilon: float) -> None:
        self.policy, self.epsilon = policy, epsilon

    def probabilities(self, obs: np.ndarray, masks: np.ndarray, sim: Any) -> np.ndarray:
        """The baseline's probabilities, epsilon-mixed."""
        return epsilon_mix(self.policy.probabilities(obs, masks, sim), masks, self.epsilon)


def make_policies(
    world: str, periods: int, targets: Sequence[str] = TARGETS
) -> tuple[Any, dict[str, Any]]:
    """The logging base and the targets; ``name+eps<E>`` mixes ``E`` uniform exploration in."""
    base = make_baseline("rfm-rules")
    policies: dict[str, Any] = {}
    for name in targets:
        baseline, _, eps = name.partition("+eps")
        policy = make_baseline(baseline)
        policy.fit(get_world(world), periods, np.random.default_rng([99, 1]))
        policies[name] = Softened(policy, float(eps)) if eps else policy
    return base, policies


def simulate(
    world: str,
    base: Any,
    policies: dict[str, Any],
    n_customers: int,
    periods: int,
    epsilon: float,
    seed: int,
    keep_targets: bool = True,
) -> Run:
    """Log ``n_customers`` for ``periods`` weeks with the targets' probabilities.

    ``keep_targets=False`` keeps only the targets' expected rewards (no ``(n, A)`` tables),
    for the truth runs.
    """
    env = CampaignVectorEnv(n_customers, world=world, horizon=periods)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "a", "p", "r")}
    targets: dict[str, list[np.ndarray]] = {k: [] for k in policies}
    expected: dict[str, list[np.ndarray]] = {k: [] for k in policies}
    for _ in range(periods):
        sim = env.simulator
        masks = env.action_masks()
        q = sim.expected_reward()
        logging = epsilon_mix(base.probabilities(obs, masks, sim), masks, epsilon)
        for name, policy in policies.items():
            probs = policy.probabilities(obs, masks, sim)
            if keep_targets:
                targets[name].append(probs.astype(np.float32))
            expected[name].append(np.einsum("ia,ia->i", probs, q))
        actions, props = sample_actions(logging, rng)
        parts["obs"].append(obs.copy())
        parts["a"].append(actions)
        parts["p"].append(props)
        obs, reward, _, _, _ = env.step(actions)
        parts["r"].append(np.asarray(reward, dtype=np.float64))
    c = {k: np.concatenate(v) for k, v in parts.items()}
    customer = np.tile(np.arange(n_customers), periods)
    step = np.repeat(np.arange(periods), n_customers)
    data = LoggedData(
        actions=c["a"],
        rewards=c["r"],
        propensities=c["p"],
        action_names=env.action_names,
        features=c["obs"],
        feature_names=tuple(env.encoder.feature_names),
        episode_ids=customer,
        steps=step,
    )
    return Run(
        data,
        {k: _normalize(np.concatenate(v)) for k, v in targets.items() if v},
        {k: np.concatenate(v) for k, v in expected.items()},
        customer,
        step,
    )


def _normalize(probs: np.ndarray) -> np.ndarray:
    out = probs.astype(np.float64)
    out /= out.sum(axis=1, keepdims=True)
    return out


def censor(run: Run, periods: int, rng: np.random.Generator) -> tuple[LoggedData, np.ndarray]:
    """Cut every episode at a random length uniform on 1..periods; returns the kept rows too."""
    n_customers = int(run.customer.max()) + 1
    length = rng.integers(1, periods + 1, n_customers)
    keep = run.step < length[run.customer]
    d = run.data
    assert d.features is not None and d.episode_ids is not None and d.steps is not None
    data = LoggedData(
        d.actions[keep],
        d.rewards[keep],
        d.propensities[keep],
        d.action_names,
        features=d.features[keep],
        feature_names=d.feature_names,
        episode_ids=d.episode_ids[keep],
        steps=d.steps[keep],
    )
    return data, keep


def truths(
    world: str,
    base: Any,
    policies: dict[str, Any],
    periods: int,
    epsilon: float,
    n_customers: int,
    gamma: float,
    chunk: int = 100_000,
    log: Any = None,
) -> dict[str, dict[str, float]]:
    """Bandit and sequential truths of every target (seeds 10**6 and up: never a log's).

    The runs go in chunks of ``chunk`` customers, each with its own seed; a truth is the
    mean over chunks and its standard error ``sd(chunk means) / sqrt(chunks)``. Why so
    many customers: coverage is judged against ONE truth, so its error is a fixed offset
    for every seed. With 1,000,000-decision logs an offset of 0.6 of the estimator's
    standard error (the truth from 200,000 customers) would alone cut a 95% interval's
    coverage to about 90%; the report prints the truth's standard error beside it.
    """
    n_chunks = max(2, -(-n_customers // chunk))
    # P(length > t) for length uniform on 1..periods
    survive = 1.0 - np.arange(periods) / periods
    discount = gamma ** np.arange(periods)
    parts: dict[str, dict[str, list[float]]] = {
        name: {"bandit": [], "sequential": [], "on_policy_per_decision": []} for name in policies
    }
    for c in range(n_chunks):
        run = simulate(
            world, base, policies, chunk, periods, epsilon, seed=10**6 + c, keep_targets=False
        )
        for k, (name, policy) in enumerate(policies.items()):
            on_policy = run_policy(
                world, policy, n_customers=chunk, horizon=periods, seed=3 * 10**6 + 100 * c + k
            )
            parts[name]["bandit"].append(float(run.expected[name].mean()))
            parts[name]["sequential"].append(
                float((survive * discount * on_policy.reward_per_period).sum())
            )
            parts[name]["on_policy_per_decision"].append(float(on_policy.reward_per_period.mean()))
        if log is not None:
            log(f"truths: {c + 1}/{n_chunks} chunks of {chunk:,} customers")
    out: dict[str, dict[str, float]] = {}
    for name, figures in parts.items():
        out[name] = {}
        for key, values in figures.items():
            arr = np.asarray(values)
            out[name][key] = float(arr.mean())
            out[name][f"{key}_se"] = float(arr.std(ddof=1) / np.sqrt(arr.size))
    return out


def _interval(
    est: Any,
    data: LoggedData,
    target: np.ndarray,
    args: argparse.Namespace,
    seed: int,
    sequential: bool = False,
    **kw: Any,
) -> tuple[float, float, float]:
    method = "bootstrap" if sequential and args.interval == "studentized" else args.interval
    if not sequential:
        kw["cluster"] = args.cluster
    e = est.estimate_interval(
        data, target, method=method, n_bootstrap=args.bootstrap, rng=seed, **kw
    )
    return e.value, e.ci_low, e.ci_high


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--world", default="retail")
    parser.add_argument("--periods", type=int, default=8)
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--seq-sizes", default="10000,100000")
    parser.add_argument("--seq-seeds", type=int, default=50)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument(
        "--interval", choices=("studentized", "bootstrap", "normal"), default="studentized"
    )
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--cluster",
        choices=("auto", "episode", "row"),
        default="auto",
        help="independent unit of the bandit intervals (auto: episode, i.e. the customer)",
    )
    parser.add_argument(
        "--estimators",
        default=",".join(e.estimator_name for e in BANDIT),
        help="comma-separated bandit estimators to run (default: all)",
    )
    parser.add_argument(
        "--truth-customers",
        type=int,
        default=4_000_000,
        help="customers behind the truths, run in chunks of 100,000 (default: 4,000,000)",
    )
    parser.add_argument(
        "--truth-cache",
        help="JSON file of the truths: read if it holds this world/periods/epsilon/gamma/"
        "targets/truth-customers, else computed and written",
    )
    parser.add_argument("--q-folds", type=int, default=2, help="cross-fitting folds of FQE")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help="comma-separated baselines; name+eps<E> mixes in E uniform exploration",
    )
    parser.add_argument("--json", help="also write every figure as JSON here")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    wanted = args.estimators.split(",")
    unknown = sorted(set(wanted) - {e.estimator_name for e in BANDIT})
    if unknown:
        parser.error(f"argument --estimators: unknown {unknown}")
    bandit = [e for e in BANDIT if e.estimator_name in wanted]
    seq_sizes = [int(float(s)) for s in args.seq_sizes.split(",") if s]
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    base, policies = make_policies(args.world, args.periods, args.targets.split(","))
    key = {
        k: getattr(args, k)
        for k in ("world", "periods", "epsilon", "gamma", "targets", "truth_customers")
    }
    truth = _cached_truth(args.truth_cache, key)
    if truth is None:
        truth = truths(
            args.world,
            base,
            policies,
            args.periods,
            args.epsilon,
            args.truth_customers,
            args.gamma,
            log=log,
        )
        if args.truth_cache:
            with open(args.truth_cache, "w") as fh:
                json.dump({"key": key, "truth": truth}, fh, indent=2)
    log(f"truths: {json.dumps(truth)}")
    records: list[dict[str, Any]] = []
    for size in sorted(set(sizes) | set(seq_sizes)):
        n_customers = max(2, size // args.periods)
        n_seeds = max(
            args.seeds if size in sizes else 0, args.seq_seeds if size in seq_sizes else 0
        )
        for seed in range(n_seeds):
            run = simulate(
                args.world, base, policies, n_customers, args.periods, args.epsilon, seed
            )
            if size in sizes and seed < args.seeds:
                q_hat = CrossFittedRewardModel(Ridge(alpha=1.0)).fit_predict(
                    run.data, rng=np.random.default_rng([seed, 2])
                )
                for name in policies:
                    for est in bandit:
                        v, lo, hi = _interval(
                            est, run.data, run.targets[name], args, seed, estimated_rewards=q_hat
                        )
                        records.append(
                            _record(
                                "bandit",
                                size,
                                seed,
                                name,
                                est.estimator_name,
                                v,
                                lo,
                                hi,
                                truth[name]["bandit"],
                            )
                        )
            if size in seq_sizes and seed < args.seq_seeds:
                data, keep = censor(run, args.periods, np.random.default_rng([seed, 3]))
                for name in policies:
                    target = run.targets[name][keep]
                    q = FittedQEvaluation(
                        Ridge(alpha=1.0), gamma=args.gamma, n_folds=args.q_folds
                    ).fit_predict(data, target, rng=np.random.default_rng([seed, 4]))
                    for est in (
                        PDIS(gamma=args.gamma),
                        WPDIS(gamma=args.gamma),
                        SequentialDR(gamma=args.gamma),
                        FQE(gamma=args.gamma),
                    ):
                        v, lo, hi = _interval(
                            est, data, target, args, seed, sequential=True, estimated_q=q
                        )
                        records.append(
                            _record(
                                "sequential",
                                size,
                                seed,
                                name,
                                est.estimator_name,
                                v,
                                lo,
                                hi,
                                truth[name]["sequential"],
                            )
                        )
            if seed % 10 == 9 or seed == n_seeds - 1:
                log(f"size {size:,}: {seed + 1}/{n_seeds} seeds")
    summary = summarize(records)
    print(report(summary, truth, args))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "args": vars(args),
                    "truth": truth,
                    "summary": summary,
                    "seconds": time.perf_counter() - start,
                },
                fh,
                indent=2,
            )
    log("done")
    return 0


def _cached_truth(path: str | None, key: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """The truths stored at ``path`` if they were computed with the same settings."""
    if not path:
        return None
    try:
        with open(path) as fh:
            stored = json.load(fh)
    except FileNotFoundError:
        return None
    return stored["truth"] if stored.get("key") == key else None


def _record(
    kind: str,
    size: int,
    seed: int,
    target: str,
    estimator: str,
    value: float,
    lo: float,
    hi: float,
    truth: float,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "size": size,
        "seed": seed,
        "target": target,
        "estimator": estimator,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
        "truth": truth,
        "rel_error": abs(value - truth) / abs(truth),
        "covered": lo <= truth <= hi,
        "width": hi - lo,
        "below": hi < truth,
        "above": lo > truth,
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["kind"], r["size"], r["estimator"], r["target"]), []).append(r)
    out = []
    for (kind, size, est, target), rs in groups.items():
        out.append(
            {
                "kind": kind,
                "size": size,
                "estimator": est,
                "target": target,
                "seeds": len(rs),
                "mean_rel_error": float(np.mean([r["rel_error"] for r in rs])),
                "coverage": float(np.mean([r["covered"] for r in rs])),
                "mean_width": float(np.mean([r["width"] for r in rs])),
                "miss_below": float(np.mean([r["below"] for r in rs])),
                "miss_above": float(np.mean([r["above"] for r in rs])),
                "mean_value": float(np.mean([r["value"] for r in rs])),
                "truth": rs[0]["truth"],
            }
        )
    return out


def report(
    summary: list[dict[str, Any]], truth: dict[str, dict[str, float]], args: argparse.Namespace
) -> str:
    lines = [
        f"# OPE accuracy on '{args.world}' ({args.periods} periods, epsilon-greedy "
        f"rfm-rules, epsilon {args.epsilon}, {args.interval} 95% intervals)",
        "",
        "| target | bandit truth (per decision) +- se | sequential truth (per episode) +- se |",
        "|---|---|---|",
    ]
    for name, t in truth.items():
        lines.append(
            f"| {name} | {t['bandit']:.4f} +- {t['bandit_se']:.4f} "
            f"| {t['sequential']:.4f} +- {t['sequential_se']:.4f} |"
        )
    targets = list(truth)
    for kind in ("bandit", "sequential"):
        rows = [s for s in summary if s["kind"] == kind]
        if not rows:
            continue
        lines += [
            "",
            f"## {kind}: mean relative error (coverage of the 95% interval)",
            "",
            "| decisions | estimator | " + " | ".join(targets) + " |",
            "|---|---|" + "---|" * len(targets),
        ]
        keys = sorted(
            {(s["size"], s["estimator"]) for s in rows},
            key=lambda k: (k[0], [s["estimator"] for s in rows].index(k[1])),
        )
        for size, est in keys:
            cells = []
            for name in targets:
                m = [
                    s
                    for s in rows
                    if s["size"] == size and s["estimator"] == est and s["target"] == name
                ]
                cells.append(f"{m[0]['mean_rel_error']:.1%} ({m[0]['coverage']:.0%})" if m else "-")
            lines.append(f"| {size:,} | {est} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
