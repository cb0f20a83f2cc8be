"""OBP's protocol on the Open Bandit Dataset: the value of Bernoulli TS from the Random logs.

    python benchmarks/obd_protocol.py [--data DIR] [--campaign all]
        [--bootstrap 1000] [--seed 0] [--reward-model logistic] [--json FILE]

``--data`` defaults to ``../shared/data/obd`` (the 10,000-row sample) when it exists, else to
the trimmed 2,000-row copy in ``tests/data/obd``; the script says which one it used.

The Random policy's logs are the logged data; the target is the Bernoulli Thompson Sampling
(BTS) policy; the truth is the mean click rate of the BTS policy's own logs (on-policy), as in
Saito et al. (2021), section 5. Prints a Markdown table: each estimator's estimate, 95% bootstrap
interval and relative error ``|estimate - truth| / truth``.

The BTS target distribution ``pi_bts(item | position)``. BTS is context-free: it shows items
without looking at the user, so its distribution is one ``(A, L)`` table. If the BTS log's
``propensity_score`` is constant for every (item, position), that constant IS the table entry
and is used. In the OBD sample it is NOT constant (BTS's posterior is updated in batches over
the week, so the same (item, position) is logged with many propensities): the script says so
and uses instead the empirical frequency of each (item, position) among the BTS log's rows at
that position, ``count(item, position) / count(position)``: an unbiased estimate of the
time-averaged BTS distribution over the logging week (the mean logged propensity would be
biased upward, since an item is logged more often when its propensity is high, and its
per-position sums are not 1). Pairs the BTS log never shows get probability 0; the observed
frequencies already sum to 1 at every position, so no mass is moved. (Were the propensities
constant, unobserved pairs would miss their mass, and each position's column would be
rescaled to sum to 1, spreading that mass in proportion.) Like OBP's own protocol
(which replays BTS from a fixed prior), this evaluates one fixed distribution for the whole
week; the BTS truth averages a policy that changed over it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campaignrl.logs.io import read_logs
from campaignrl.ope import (
    DM,
    DR,
    IPS,
    SNDR,
    SNIPS,
    CrossFittedRewardModel,
    DRos,
    SwitchDR,
    evaluate,
)
from campaignrl.ope.obd import import_obd, obd_action_names

_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = _ROOT.parent / "shared" / "data" / "obd"
"""the 10,000-row "all" campaign sample of the OBD, beside the checkout (not in a clone)"""
SAMPLE_DATA = _ROOT / "tests" / "data" / "obd"
"""the trimmed 2,000-row copy shipped with the tests (CC BY 4.0, see its README)"""


def default_data(shared: Path = SHARED_DATA, sample: Path = SAMPLE_DATA) -> tuple[Path, str]:
    """The folder ``--data`` defaults to, and a sentence saying which one it is.

    The shared 10,000-row sample when it is there (``random/`` and ``bts/``), else the
    trimmed 2,000-row copy in ``tests/data/obd``, so the script runs on a fresh clone.
    """
    if (shared / "random").is_dir() and (shared / "bts").is_dir():
        return shared, f"the shared OBD sample in {shared}"
    return sample, (
        f"the trimmed 2,000-row OBD copy in {sample} ({shared} is absent; pass --data for "
        "another copy)"
    )


SWITCH_TAU = 5.0
"""Switch-DR threshold: weights are pi_bts / (1/80), so tau = 5 falls back on the model
where BTS shows the item at that position with probability above 6.25%"""
DROS_LAMBDA = 100.0
"""DRos shrinkage"""


def bts_table(
    bts: pd.DataFrame, n_items: int, n_positions: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``(A, L)`` BTS table and a description of how it was obtained (module docstring)."""
    items = bts["action"].str.removeprefix("item_").astype(int).to_numpy()
    positions = bts["position"].to_numpy()
    frame = pd.DataFrame({"item": items, "position": positions, "p": bts["propensity"].to_numpy()})
    distinct = frame.groupby(["item", "position"])["p"].nunique()
    constant = bool((distinct == 1).all())
    table = np.zeros((n_items, n_positions))
    if constant:
        first = frame.groupby(["item", "position"])["p"].first()
        table[first.index.get_level_values(0), first.index.get_level_values(1)] = first.to_numpy()
        how = "logged propensity_score (constant per item and position)"
    else:
        counts = np.zeros((n_items, n_positions))
        np.add.at(counts, (items, positions), 1.0)
        table = counts / counts.sum(axis=0, keepdims=True)
        how = "empirical frequency per position (propensity_score varies over time)"
    seen = np.zeros((n_items, n_positions), dtype=bool)
    seen[items, positions] = True
    unobserved = [(int(a), int(pos)) for a, pos in np.argwhere(~seen)]
    sums = table.sum(axis=0)
    info = {
        "method": how,
        "propensity_constant_per_pair": constant,
        "pairs_with_varying_propensity": int((distinct > 1).sum()),
        "pairs_observed": int(seen.sum()),
        "most_distinct_propensities_of_a_pair": int(distinct.max()),
        "unobserved_pairs": unobserved,
        "column_sums": [float(s) for s in sums],
    }
    if not constant and not np.allclose(sums, 1.0):  # pragma: no cover - counts always sum to 1
        raise RuntimeError("frequencies must sum to 1")
    if constant:  # logged propensities of a context-free policy: renormalize what is unseen
        table = table / np.where(sums > 0, sums, 1.0)
    return table, info


def _reward_model(name: str) -> Any:
    if name == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0)
    if name == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, random_state=0)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=0.1, max_iter=1000)


def run_protocol(
    data_dir: str | Path,
    *,
    campaign: str = "all",
    n_bootstrap: int = 1000,
    seed: int = 0,
    reward_model: str = "logistic",
) -> dict[str, Any]:
    """Run the protocol; returns the truth, the BTS table's description and the estimates."""
    root = Path(data_dir)
    random_log, items = import_obd(root / "random", campaign=campaign)
    bts_log, _ = import_obd(root / "bts", campaign=campaign)
    n_items = int(items["item_id"].max()) + 1
    names = obd_action_names(n_items)
    data = read_logs(random_log, action_names=names)
    table, info = bts_table(bts_log, n_items, data.n_positions)
    truth = float(bts_log["reward"].mean())
    rng = np.random.default_rng(seed)
    model_seed, boot_seed = (int(s) for s in rng.integers(2**63, size=2))
    q_hat = CrossFittedRewardModel(_reward_model(reward_model)).fit_predict(data, rng=model_seed)
    estimators = [
        IPS(),
        SNIPS(),
        DM(),
        DR(),
        SNDR(),
        SwitchDR(tau=SWITCH_TAU),
        DRos(lambda_=DROS_LAMBDA),
    ]
    result = evaluate(
        data, table, estimators, estimated_rewards=q_hat, n_bootstrap=n_bootstrap, rng=boot_seed
    )
    rows = [
        {**e.to_dict(), "relative_error": abs(e.value - truth) / truth} for e in result.estimates
    ]
    return {
        "truth": truth,
        "n_random": data.n_rounds,
        "n_bts": len(bts_log),
        "bts_table": info,
        "reward_model": reward_model,
        "estimates": rows,
        "diagnostics": result.diagnostics.to_dict(),
        "table": table,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table with its notes."""
    info = result["bts_table"]
    lines = [
        f"Random -> Bernoulli TS on OBD ({result['n_random']:,} Random rows; truth = mean click "
        f"of {result['n_bts']:,} BTS rows = {result['truth']:.6f}; reward model "
        f"{result['reward_model']}, cross-fitted, 3 folds; 95% studentized bootstrap intervals)",
        "",
        "| estimator | estimate | 95% CI | relative error |",
        "|---|---|---|---|",
    ]
    for r in result["estimates"]:
        lines.append(
            f"| {r['estimator']} | {r['value']:.6f} | [{r['ci_low']:.6f}, {r['ci_high']:.6f}] "
            f"| {r['relative_error']:.1%} |"
        )
    d = result["diagnostics"]
    lines += [
        "",
        f"BTS target: {info['method']}; {info['pairs_with_varying_propensity']} of "
        f"{info['pairs_observed']} observed (item, position) pairs have more than one logged "
        f"propensity (up to {info['most_distinct_propensities_of_a_pair']}); "
        f"{len(info['unobserved_pairs'])} pairs never shown by BTS (probability 0): "
        f"{info['unobserved_pairs'][:10]}.",
        f"Weights: effective sample size {d['effective_sample_size']:.0f}, largest "
        f"{d['max_weight']:.1f}; switch-dr tau={SWITCH_TAU:g}, dr-os lambda={DROS_LAMBDA:g}.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with random/, bts/ (default: ../shared/data/obd if present, else the "
        "trimmed copy in tests/data/obd)",
    )
    parser.add_argument("--campaign", default="all")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reward-model", choices=("logistic", "ridge", "hgb"), default="logistic")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.data is None:
        args.data, which = default_data(SHARED_DATA, SAMPLE_DATA)
        print(f"obd_protocol: data: {which}", file=sys.stderr)
    result = run_protocol(
        args.data,
        campaign=args.campaign,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        reward_model=args.reward_model,
    )
    print(markdown(result))
    if args.json:
        out = {k: v for k, v in result.items() if k != "table"}
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
