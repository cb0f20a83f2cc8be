"""Fidelity of fitted simulators: fit a preset's logs, compare policies and rates with truth.

    python benchmarks/sim_fidelity.py [--worlds retail,fatigue] [--customers 20000]
        [--periods 12] [--epsilon 0.3] [--eval-customers 20000] [--seed 0]
        [--variants] [--drop-features | --drop-only] [--feedback-ari] [--json out.json]
        [--ppo [--ppo-timesteps N] [--ppo-customers N]]

For each world (a preset, or ``preset:field=value,...`` with ``world_overrides``):

1. log ``--customers`` customers for ``--periods`` weeks under ``rfm-rules`` with
   ``--epsilon`` uniform exploration (the issue's logging policy), outcome columns included;
2. ``fit_simulator`` on the log (``segments="auto"``);
3. evaluate the same policies in the fitted world and in the true one, on
   ``--eval-customers`` customers for ``--periods`` weeks with common seeds: ``random``,
   ``no-contact``, ``static-best`` (chosen in the fitted world), ``rfm-rules``, the logging
   policy, the fitted world's myopic oracle and its restrained variant (both computed from
   the observation with the fitted parameters: deployable in the true world);
4. print each policy's value per customer in both worlds, the Spearman correlation of the
   two value vectors and the mean relative error ``|V_fit - V_true| / |V_true|``;
5. per fitted segment (all channels), the observed (logged) open, conversion-after-open
   and opt-out-per-send rates beside those of the logging policy simulated in the fitted
   world (five times as many customers), with the relative error and the observed rate's
   binomial standard error; and the share of segment x channel rates within 10% or 2
   standard errors.

The myopic oracle of the fitted world is among the policies, computed from the observation
so that it runs in the true world too
(:class:`campaignrl.simulators.fit.myopic.SpecMyopicPolicy`). ``--ppo`` adds two trained
PPOs (training costs minutes per world): one trained in the fitted world, one in the true
world, each on ``--ppo-customers`` customers for ``--ppo-timesteps`` customer-steps of
``--periods``-week campaigns with the settings of ``experiments/fatigue.yaml``
(:data:`PPO_PARAMS`) and seed ``--seed``. Both join the ranked policies, and the transfer
check evaluates both, with the fitted myopic oracle, in the true world on the same
evaluation customers (one seed: common random numbers), reporting each value with its 95%
interval and the ratio PPO(fitted) / PPO(true) with a delta-method interval
(:func:`ratio_ci95`).

``--variants`` adds worlds with parameters the fit was not tuned on; ``--drop-features`` also
fits each log without its ``segment=`` and ``affinity=`` columns (segments from RFM, consent
and outcome rates only; tastes from response rates), the harder case of a log without a
segment model or recommender scores. ``--feedback-ari`` instead measures segment recovery
(adjusted Rand index against the true segments) of such a log fitted without and with
synthetic feedback text whose topics depend on the true segment.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from campaignrl.agents.baselines import make_baseline
from campaignrl.rollout import FeaturePolicy, mean_ci95, run_policy
from campaignrl.simulators import get_world
from campaignrl.simulators.fit import fit_simulator
from campaignrl.simulators.fit.myopic import SpecMyopicPolicy
from campaignrl.simulators.spec import WorldSpec

PPO_PARAMS: dict[str, Any] = {"ent_coef": 0.0, "n_epochs": 10, "learning_rate": 0.0005}
"""PPO settings of ``experiments/fatigue.yaml`` (its budget: 8,000,000 customer-steps on
4,096 customers)"""

VARIANTS = (
    "retail:fatigue_decay=0.75,unsubscribe_fatigue_slope=0.8,lapse_after=6",
    "retail:winback_open_factor=0.7,churn_slope=0.004,affinity_weight=1.4",
    "fatigue:contact_cap=2,cap_window=3,margin_rate=0.3,channel_conversion=1.0/0.6/0.7",
    "fatigue:fatigue_organic_penalty=0.15,unsubscribe_base=0.004/0.02/0.015",
)
"""world variants the fit was not tuned on (``/`` separates the items of a tuple field)"""


def parse_world(text: str) -> tuple[str, WorldSpec]:
    """``preset`` or ``preset:field=value,field=a/b/c``."""
    name, _, rest = text.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if "/" in value:
            overrides[key] = tuple(float(v) for v in value.split("/"))
        else:
            overrides[key] = int(value) if value.lstrip("-").isdigit() else float(value)
    return text, get_world(name, **overrides)


def evaluate(spec: WorldSpec, policy: Any, n: int, periods: int, seed: int) -> float:
    """Mean profit per customer over ``periods`` weeks."""
    return float(customer_values(spec, policy, n, periods, seed).mean())


def customer_values(spec: WorldSpec, policy: Any, n: int, periods: int, seed: int) -> np.ndarray:
    """Profit of each of ``n`` customers over ``periods`` weeks (population fixed by ``seed``)."""
    res = run_policy(spec, policy, n_customers=n, horizon=periods, seed=seed)
    return np.asarray(res.value_per_customer, dtype=np.float64)


def ratio_ci95(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Ratio of means ``R = mean(a) / mean(b)`` of paired values, with a 95% interval.

    Delta method for a ratio estimator (Cochran, *Sampling Techniques*, 3rd ed., 1977,
    section 6.3): ``se(R) = sd(a_i - R b_i) / (sqrt(n) |mean(b)|)``, interval ``R +- 1.96
    se``. Pairing (the same customers and seeds for ``a`` and ``b``) removes the shared noise.
    The interval covers evaluation noise only, not the spread between training seeds.

    Examples:
        >>> r, lo, hi = ratio_ci95(np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0]))
        >>> (r, lo, hi)
        (2.0, 2.0, 2.0)
    """
    n = a.shape[0]
    r = float(a.mean() / b.mean())
    half = 1.96 * float((a - r * b).std(ddof=1)) / float(np.sqrt(n) * abs(b.mean()))
    return r, r - half, r + half


def train_ppo(world: WorldSpec, args: argparse.Namespace, name: str) -> tuple[FeaturePolicy, float]:
    """PPO trained in ``world`` (seed ``args.seed``), as its exported numpy policy.

    Returns the policy and the training seconds.
    """
    import torch

    from campaignrl.agents.registry import make_agent
    from campaignrl.envs.vector import CampaignVectorEnv

    # one thread: the machine is shared, and one thread gives the same result everywhere
    torch.set_num_threads(1)
    env = CampaignVectorEnv(args.ppo_customers, world=world, horizon=args.periods)
    agent = make_agent(
        "ppo", env, params=PPO_PARAMS, total_timesteps=args.ppo_timesteps, seed=args.seed
    )
    print(f"  training {name}: {args.ppo_timesteps:,} customer-steps ...", flush=True)
    trained = agent.learn(args.ppo_timesteps, progress=sys.stderr.isatty())
    print(f"  {name}: {trained.timesteps:,} customer-steps in {trained.seconds:.0f} s", flush=True)
    return FeaturePolicy(agent.policy(), name), trained.seconds


def same_features(a: WorldSpec, b: WorldSpec, periods: int) -> bool:
    """Whether a policy trained in ``a`` reads the observations and actions of ``b``."""
    from campaignrl.envs.vector import CampaignVectorEnv

    ea = CampaignVectorEnv(1, world=a, horizon=periods)
    eb = CampaignVectorEnv(1, world=b, horizon=periods)
    return bool(
        ea.encoder.feature_names == eb.encoder.feature_names and ea.action_names == eb.action_names
    )


class Logging:
    """``rfm-rules`` with ``epsilon`` uniform exploration, as a population policy."""

    def __init__(self, epsilon: float) -> None:
        self.rules = make_baseline("rfm-rules")
        self.epsilon = epsilon
        self.name = f"rfm-rules+eps{epsilon:g}"

    def probabilities(self, obs: np.ndarray, masks: np.ndarray, sim: Any) -> np.ndarray:
        """The rules' choice mixed with uniform exploration over the allowed actions."""
        from campaignrl.policies.sampling import epsilon_mix

        return epsilon_mix(self.rules.probabilities(obs, masks, sim), masks, self.epsilon)


def segment_rates(log: Any, spec: WorldSpec) -> dict[tuple[str, str], dict[str, float]]:
    """Observed rates per (segment, channel) and per (segment, "all").

    Opens / sends, purchases / opens, opt-outs / sends, with the counts they are shares of.
    """
    seg_cols = [f"segment={s}" for s in spec.segment_names]
    seg = np.asarray(spec.segment_names)[log[seg_cols].to_numpy().argmax(axis=1)]
    channel = log["action"].str.partition("@")[2].to_numpy()
    out: dict[tuple[str, str], dict[str, float]] = {}
    opened = log["opened"].to_numpy(bool)
    bought = log["purchased"].to_numpy(bool)
    unsub = log["unsubscribed"].to_numpy(bool)
    for s in spec.segment_names:
        for c in [ch.name for ch in spec.catalog.channels] + ["all"]:
            sent = (seg == s) & ((channel == c) if c != "all" else (channel != ""))
            k = int(sent.sum())
            ko = int((sent & opened).sum())
            out[(s, c)] = {
                "sends": k,
                "opens": ko,
                "open": opened[sent].mean() if k else np.nan,
                "conversion": bought[sent & opened].mean() if ko else np.nan,
                "optout": unsub[sent].mean() if k else np.nan,
            }
    return out


def run_world(label: str, true: WorldSpec, args: argparse.Namespace, drop: bool) -> dict[str, Any]:
    log = run_policy(
        true,
        Logging(args.epsilon),
        n_customers=args.customers,
        horizon=args.periods,
        seed=args.seed,
        record=True,
    ).log
    assert log is not None
    if drop:
        log = log.drop(columns=[c for c in log.columns if c.startswith(("segment=", "affinity="))])
    t0 = time.perf_counter()
    fitted = fit_simulator(log, segments="auto", seed=args.seed)
    fit_seconds = time.perf_counter() - t0
    spec = fitted.spec
    names_match = set(spec.segment_names) == set(true.segment_names)
    static = make_baseline("static-best")
    static.fit(spec, args.periods, np.random.default_rng(args.seed))
    policies: list[tuple[str, Any]] = [
        ("random", make_baseline("random")),
        ("no-contact", make_baseline("no-contact")),
        (static.describe(), static),
        ("rfm-rules", make_baseline("rfm-rules")),
        (f"rfm-rules+eps{args.epsilon:g}", Logging(args.epsilon)),
    ]
    if names_match:
        policies += [
            ("fitted myopic", SpecMyopicPolicy(spec)),
            ("fitted restrained (F<=1)", SpecMyopicPolicy(spec, fatigue_threshold=1.0)),
        ]
    transfer: dict[str, Any] | None = None
    ppo_note = ""
    if args.ppo:
        if same_features(spec, true, args.periods):
            ppo_fit, sec_fit = train_ppo(spec, args, "PPO trained in fitted")
            ppo_true, sec_true = train_ppo(true, args, "PPO trained in true")
            policies += [("PPO trained in fitted", ppo_fit), ("PPO trained in true", ppo_true)]
            transfer = ppo_transfer(true, ppo_fit, ppo_true, SpecMyopicPolicy(spec), args)
            transfer["train_seconds"] = {"fitted": sec_fit, "true": sec_true}
        else:
            ppo_note = (
                "PPO skipped: the fitted world's observation features differ from the true one's"
            )
    rows = []
    # common random numbers: every policy, in both worlds, meets the same customers and draws
    seed = args.seed + 1000
    for name, pol in policies:
        v_true = evaluate(true, pol, args.eval_customers, args.periods, seed)
        v_fit = evaluate(spec, pol, args.eval_customers, args.periods, seed)
        rows.append({"policy": name, "true": v_true, "fitted": v_fit})
    v_t = np.array([r["true"] for r in rows])
    v_f = np.array([r["fitted"] for r in rows])
    rho = float(spearmanr(v_t, v_f).statistic)
    rel = np.abs(v_f - v_t) / np.maximum(np.abs(v_t), 1e-12)

    # five times the logged population (at most 200,000 customers, for memory): the
    # simulated rates' own noise is then small beside the observed ones
    sim_log = run_policy(
        spec,
        Logging(args.epsilon),
        n_customers=min(5 * args.customers, 200_000),
        horizon=args.periods,
        seed=args.seed + 7,
        record=True,
    ).log
    assert sim_log is not None
    seg_log = log if not drop else None
    rates = []
    if seg_log is not None and names_match:
        obs = segment_rates(log, spec)
        sim = segment_rates(sim_log, spec)
        for key, o in obs.items():
            for rate in ("open", "conversion", "optout"):
                a, b = o[rate], sim[key][rate]
                trials = o["opens"] if rate == "conversion" else o["sends"]
                rates.append(
                    {
                        "segment": key[0],
                        "channel": key[1],
                        "rate": rate,
                        "observed": a,
                        "simulated": b,
                        "trials": trials,
                        # binomial standard error of the observed rate, relative to it
                        "rel_se": np.sqrt(a * (1 - a) / trials) / a if trials and a > 0 else np.nan,
                        "rel_error": abs(b - a) / a if a > 0 else np.nan,
                    }
                )
    return {
        "world": label + (" (no segment/affinity columns)" if drop else ""),
        "fit_seconds": fit_seconds,
        "segments": list(spec.segment_names),
        "optout_multipliers": [s.unsubscribe_multiplier for s in spec.segments],
        "policies": rows,
        "spearman": rho,
        "mean_rel_error": float(rel.mean()),
        "max_rel_error": float(rel.max()),
        "rates": rates,
        "notes": list(fitted.notes) + ([ppo_note] if ppo_note else []),
        "ppo_transfer": transfer,
    }


def ppo_transfer(
    true: WorldSpec,
    ppo_fit: FeaturePolicy,
    ppo_true: FeaturePolicy,
    myopic: SpecMyopicPolicy,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The fitted world's PPO and myopic oracle beside the true world's PPO, in the true world.

    All three run on the same ``--eval-customers`` customers with one seed (common random
    numbers), so the ratio's interval is paired (:func:`ratio_ci95`).
    """
    seed = args.seed + 2000
    vals = {
        "PPO trained in fitted": customer_values(
            true, ppo_fit, args.eval_customers, args.periods, seed
        ),
        "PPO trained in true": customer_values(
            true, ppo_true, args.eval_customers, args.periods, seed
        ),
        "fitted myopic": customer_values(true, myopic, args.eval_customers, args.periods, seed),
    }
    out: dict[str, Any] = {
        "eval_seed": seed,
        "values": {
            k: dict(zip(("mean", "lo", "hi"), mean_ci95(v), strict=True)) for k, v in vals.items()
        },
    }
    base = vals["PPO trained in true"]
    for k in ("PPO trained in fitted", "fitted myopic"):
        out[f"ratio {k} / PPO trained in true"] = dict(
            zip(("ratio", "lo", "hi"), ratio_ci95(vals[k], base), strict=True)
        )
    return out


def feedback_ari(label: str, true: WorldSpec, args: argparse.Namespace) -> dict[str, Any]:
    """Segment recovery with and without feedback text (adjusted Rand index).

    A log without its ``segment=`` and ``affinity=`` columns is fitted without and with
    synthetic feedback text whose topics depend on the true segment.
    """
    from sklearn.metrics import adjusted_rand_score

    from campaignrl.simulators.fit.feedback import synthetic_feedback

    log = run_policy(
        true,
        Logging(args.epsilon),
        n_customers=args.customers,
        horizon=args.periods,
        seed=args.seed,
        record=True,
    ).log
    assert log is not None
    first = log[log["step"] == 0]
    seg_cols = [f"segment={s}" for s in true.segment_names]
    truth = dict(zip(first["customer_id"], first[seg_cols].to_numpy().argmax(axis=1), strict=True))
    bare = log.drop(columns=[c for c in log.columns if c.startswith(("segment=", "affinity="))])
    feedback = synthetic_feedback(
        first[seg_cols].to_numpy().argmax(axis=1),
        np.random.default_rng(args.seed),
        customer_ids=list(first["customer_id"]),
    )
    out: dict[str, Any] = {"world": label}
    for k in (len(true.segments), "auto"):
        for name, fb in (("without text", None), ("with text", feedback)):
            fitted = fit_simulator(bare, feedback=fb, segments=k, seed=args.seed)
            ari = adjusted_rand_score([truth[c] for c in fitted.customer_ids], fitted.segment)
            out[f"K={k}, {name}"] = {"ari": float(ari), "k": len(fitted.spec.segments)}
    return out


def print_result(res: dict[str, Any]) -> None:
    print(f"\n== {res['world']}: fit {res['fit_seconds']:.1f} s, segments {res['segments']}")
    print(f"{'policy':<34}{'true':>10}{'fitted':>10}{'rel.err':>9}")
    for r in res["policies"]:
        err = abs(r["fitted"] - r["true"]) / max(abs(r["true"]), 1e-12)
        print(f"{r['policy']:<34}{r['true']:>10.3f}{r['fitted']:>10.3f}{err:>9.1%}")
    print(
        f"Spearman {res['spearman']:.3f}   mean relative error {res['mean_rel_error']:.1%}"
        f"   max {res['max_rel_error']:.1%}"
    )
    if res["rates"]:
        print(
            "  per segment (all channels): observed / simulated (relative error; observed +-1 s.e.)"
        )
        for rate in ("open", "conversion", "optout"):
            cells = [r for r in res["rates"] if r["rate"] == rate and r["channel"] == "all"]
            text = "  ".join(
                f"{r['segment']} {r['observed']:.4f}/{r['simulated']:.4f} "
                f"({r['rel_error']:.1%}; +-{r['rel_se']:.1%})"
                for r in cells
            )
            worst = max(r["rel_error"] for r in cells)
            print(f"  {rate:<11} max {worst:.1%}: {text}")
        mults = ", ".join(
            f"{n} {m:.2f}" for n, m in zip(res["segments"], res["optout_multipliers"], strict=True)
        )
        print(f"  fitted opt-out multipliers: {mults}")
        chan = [r for r in res["rates"] if r["channel"] != "all" and np.isfinite(r["rel_error"])]
        within = np.mean([r["rel_error"] <= max(0.10, 2 * r["rel_se"]) for r in chan])
        print(f"  per segment x channel: {within:.0%} of {len(chan)} rates within 10% or 2 s.e.")
    tr = res.get("ppo_transfer")
    if tr:
        secs = tr["train_seconds"]
        print(
            f"  in the true world, same customers (seed {tr['eval_seed']}); PPO training "
            f"{secs['fitted']:.0f} s (fitted), {secs['true']:.0f} s (true):"
        )
        for k, v in tr["values"].items():
            print(f"    {k:<24}{v['mean']:>10.3f}  [{v['lo']:.3f}, {v['hi']:.3f}]")
        for k, v in tr.items():
            if k.startswith("ratio"):
                print(f"    {k[6:]:<45}{v['ratio']:>7.1%}  [{v['lo']:.1%}, {v['hi']:.1%}]")
    for note in res["notes"]:
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worlds", default="retail,fatigue")
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--periods", type=int, default=12)
    p.add_argument("--epsilon", type=float, default=0.3)
    p.add_argument("--eval-customers", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", action="store_true")
    p.add_argument("--drop-features", action="store_true")
    p.add_argument("--feedback-ari", action="store_true")
    p.add_argument(
        "--drop-only",
        action="store_true",
        help="fit only the log without its segment=/affinity= columns (not also the whole one)",
    )
    p.add_argument("--json", default=None)
    p.add_argument(
        "--ppo", action="store_true", help="add PPOs trained in the fitted and true worlds"
    )
    p.add_argument("--ppo-timesteps", type=int, default=8_000_000)
    p.add_argument("--ppo-customers", type=int, default=4096)
    args = p.parse_args(argv)
    worlds = [w for w in args.worlds.split(",") if w]
    if args.variants:
        worlds += list(VARIANTS)
    results = []
    for text in worlds:
        label, spec = parse_world(text)
        if args.feedback_ari:
            res = feedback_ari(label, spec, args)
            print(f"\n== {label}: segment recovery (ARI vs true segments), no segment columns")
            for key, val in res.items():
                if key != "world":
                    print(f"  {key:<28} ARI {val['ari']:.3f}  ({val['k']} segments)")
            results.append(res)
            continue
        drops = (True,) if args.drop_only else (False, True) if args.drop_features else (False,)
        for drop in drops:
            res = run_world(label, spec, args, drop)
            print_result(res)
            results.append(res)
            sys.stdout.flush()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory {peak:.0f} MB")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
