"""The ``campaignrl ope`` and ``campaignrl logs import-obd`` commands.

``register(subparsers, parser_class)`` adds both to the ``campaignrl`` parser. Handlers raise
``ValueError`` on bad input (the CLI prints it as one line and exits with code 2).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl._progress import progress_bar
from campaignrl.ope.intervals import MIN_BOOTSTRAP

__all__ = ["BANDIT_NAMES", "SEQUENTIAL_NAMES", "register"]

BANDIT_NAMES: tuple[str, ...] = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")
"""``--estimators`` names without ``--sequential``: the estimators' own (obp's) names;
``dros`` is accepted for ``dr-os``"""
SEQUENTIAL_NAMES: tuple[str, ...] = ("pdis", "wpdis", "sdr", "fqe")
"""``--estimators`` names with ``--sequential``"""
_ALIASES = {"dros": "dr-os", "ips": "ipw", "snips": "snipw"}

REWARD_MODELS = ("hgb", "ridge", "logistic")
Q_MODELS = ("ridge", "hgb")


def _number(low: float | None, high: float | None, what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not np.isfinite(value) or (low is not None and value < low):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _positive(what: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (np.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _int_at_least(low: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _one_of(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


def register(subparsers: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add ``ope`` and ``logs import-obd`` to the ``campaignrl`` subcommands.

    Args:
        subparsers: The ``add_subparsers()`` action of the main parser.
        parser_class: The parser class for nested subcommands (one-line errors, exit 2).
    """
    p = subparsers.add_parser(
        "ope", help="off-policy evaluation of a target policy on decision logs"
    )
    p.set_defaults(handler=_cmd_ope)
    p.add_argument("--logs", type=Path, required=True, help="decision log (.parquet or .csv)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--policy", type=Path, help="exported policy directory (the target)")
    target.add_argument(
        "--target-probs",
        type=Path,
        help="target probabilities: .npy/.parquet of shape (A,), (A, L), (n, A) or (n, A, L)",
    )
    p.add_argument(
        "--estimators",
        default=None,
        help=f"comma-separated: {', '.join(BANDIT_NAMES)}; with --sequential "
        f"{', '.join(SEQUENTIAL_NAMES)} (default: ipw,snipw,dr or pdis,wpdis,sdr,fqe)",
    )
    p.add_argument(
        "--sequential",
        action="store_true",
        help="trajectory estimators over episodes (needs episode_id and step columns)",
    )
    p.add_argument(
        "--gamma",
        type=_number(0.0, 1.0, "a number in [0, 1]"),
        default=1.0,
        help="discount factor of the sequential estimators (default: 1)",
    )
    p.add_argument(
        "--bootstrap",
        type=_int_at_least(
            MIN_BOOTSTRAP,
            f"an integer >= {MIN_BOOTSTRAP} (fewer cannot place the 2.5% tails of a 95% "
            "interval; --interval normal needs no resamples)",
        ),
        default=1000,
        help=f"bootstrap resamples, at least {MIN_BOOTSTRAP} (default: 1000); "
        "--interval normal uses none",
    )
    p.add_argument(
        "--interval",
        type=_one_of(("studentized", "bootstrap", "normal")),
        default=None,
        help="95%% intervals: studentized (bootstrap-t, bandit estimators only; their "
        "default), bootstrap (percentile; the --sequential default) or normal (delta method)",
    )
    p.add_argument(
        "--cluster",
        type=_one_of(("auto", "episode", "row")),
        default="auto",
        help="independent unit of the bandit intervals: episode (a customer's decisions move "
        "together: cluster-robust), row, or auto (default: episode when the log has "
        "episode_id)",
    )
    p.add_argument(
        "--seed",
        type=_int_at_least(0, "a non-negative integer"),
        default=0,
        help="seed of the folds and the bootstrap (default: 0)",
    )
    p.add_argument("--clip", type=_positive("a positive number"), help="clip ipw weights at this")
    p.add_argument(
        "--switch-tau", type=_positive("a positive number"), help="weight threshold of switch-dr"
    )
    p.add_argument("--dros-lambda", type=_positive("a positive number"), help="shrinkage of dr-os")
    p.add_argument(
        "--wpdis-normalization",
        type=_one_of(("reached", "absorbing")),
        default="reached",
        help="wpdis per step among episodes reaching it (reached) or all (absorbing)",
    )
    p.add_argument(
        "--reward-model",
        type=_one_of(REWARD_MODELS),
        default="hgb",
        help="cross-fitted reward model of dm and the dr family (default: hgb, gradient boosting)",
    )
    p.add_argument(
        "--q-model",
        type=_one_of(Q_MODELS),
        default="ridge",
        help="regressor of fitted Q evaluation (sdr, fqe; default: ridge, per action and step)",
    )
    p.add_argument(
        "--actions",
        help="comma-separated action names in index order (default: the policy's, the "
        "log's <stem>.items file, the catalog, or prefix_0..prefix_K inferred from the log)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    logs = subparsers.add_parser("logs", help="decision-log utilities")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True, parser_class=parser_class)
    from campaignrl.service.commands import register_logs_export  # `logs export` (the service)

    register_logs_export(logs_sub, parser_class)
    imp = logs_sub.add_parser(
        "import-obd", help="convert an Open Bandit Dataset campaign folder to our log schema"
    )
    imp.set_defaults(handler=_cmd_import_obd)
    imp.add_argument("dir", type=Path, metavar="DIR", help="OBD folder (campaign CSV + items)")
    imp.add_argument("--out", type=Path, required=True, help="log file (.parquet or .csv)")
    imp.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    imp.add_argument("--campaign", help="campaign CSV stem (default: the folder's only one)")


# --------------------------------------------------------------------------------------------
# ope
# --------------------------------------------------------------------------------------------


def _estimator_names(args: argparse.Namespace) -> list[str]:
    allowed = SEQUENTIAL_NAMES if args.sequential else BANDIT_NAMES
    if args.estimators is None:
        return ["pdis", "wpdis", "sdr", "fqe"] if args.sequential else ["ipw", "snipw", "dr"]
    names = [_ALIASES.get(s.strip(), s.strip()) for s in str(args.estimators).split(",")]
    for name in names:
        if name not in allowed:
            other = BANDIT_NAMES if args.sequential else SEQUENTIAL_NAMES
            hint = (
                f" ({name!r} is a {'bandit' if args.sequential else 'sequential'} estimator: "
                f"{'drop' if args.sequential else 'add'} --sequential)"
                if name in other
                else ""
            )
            raise ValueError(
                f"argument --estimators: unknown estimator {name!r}; choose from "
                f"{', '.join(allowed)}{hint}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"argument --estimators: repeated estimator in {args.estimators!r}")
    return names


def _bandit_estimators(names: list[str], args: argparse.Namespace) -> list[Any]:
    from campaignrl.ope.estimators import DM, DR, IPS, SNDR, SNIPS, DRos, SwitchDR

    out: list[Any] = []
    for name in names:
        if name == "ipw":
            out.append(IPS(lambda_=args.clip))
        elif name == "snipw":
            out.append(SNIPS())
        elif name == "dm":
            out.append(DM())
        elif name == "dr":
            out.append(DR())
        elif name == "sndr":
            out.append(SNDR())
        elif name == "switch-dr":
            if args.switch_tau is None:
                raise ValueError("argument --switch-tau: required by switch-dr (no neutral value)")
            out.append(SwitchDR(tau=args.switch_tau))
        else:
            if args.dros_lambda is None:
                raise ValueError("argument --dros-lambda: required by dr-os (no neutral value)")
            out.append(DRos(lambda_=args.dros_lambda))
    return out


def _sequential_estimators(names: list[str], args: argparse.Namespace) -> list[Any]:
    from campaignrl.ope.sequential import FQE, PDIS, WPDIS, SequentialDR

    out: list[Any] = []
    for name in names:
        if name == "pdis":
            out.append(PDIS(gamma=args.gamma))
        elif name == "wpdis":
            out.append(WPDIS(gamma=args.gamma, normalization=args.wpdis_normalization))
        elif name == "sdr":
            out.append(SequentialDR(gamma=args.gamma))
        else:
            out.append(FQE(gamma=args.gamma))
    return out


def _log_action_values(path: Path) -> tuple[list[Any], int]:
    """The distinct values of the log's ``action`` column, and the number of rows."""
    import pandas as pd

    if path.suffix.lower() == ".csv":
        column = pd.read_csv(path, usecols=["action"])["action"]
    else:
        column = pd.read_parquet(path, columns=["action"])["action"]
    return list(pd.unique(column.dropna())), len(column)


def _is_number(value: Any) -> bool:
    """Whether an ``action`` value reads as a number (an index, or a bad one: -1, 1.5)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _table_actions(table: np.ndarray, n_rows: int) -> int | None:
    """The number of actions of a ``--target-probs`` table, read from its shape."""
    if table.ndim == 1:
        return int(table.shape[0])
    if table.ndim == 3:
        return int(table.shape[1])
    if table.ndim == 2:  # (n, A) when it has a row per decision, (A, L) otherwise
        return int(table.shape[1] if table.shape[0] == n_rows else table.shape[0])
    return None  # as_target names the shape


def _action_names(
    args: argparse.Namespace, policy: Any, table: np.ndarray | None
) -> tuple[tuple[str, ...], bool]:
    """The log's action space, and whether it was guessed from the log's values.

    See ``--actions``'s help for the order of the sources. A guess never refuses the log:
    :func:`~campaignrl.logs.read_logs` then names the row and value it cannot read.
    """
    if policy is not None:
        return tuple(policy.action_names), False
    if args.actions:
        names = tuple(a.strip() for a in str(args.actions).split(",") if a.strip())
        if not names:
            raise ValueError(f"argument --actions: no action names in {args.actions!r}")
        return names, False
    from campaignrl.ope.obd import items_path

    sidecar = items_path(args.logs)
    if sidecar.is_file():
        import pandas as pd

        items = pd.read_csv(sidecar) if sidecar.suffix == ".csv" else pd.read_parquet(sidecar)
        if "action" in items.columns:
            return tuple(str(a) for a in items["action"]), False
    from campaignrl.catalog import default_catalog

    catalog = tuple(default_catalog().action_names)
    try:
        values, n_rows = _log_action_values(args.logs)
    except Exception:  # whatever is wrong with the file, read_logs says it better
        return catalog, True
    if values and all(_is_number(v) for v in values):
        # Integer actions: a probability table says how many there are.
        n_actions = _table_actions(table, n_rows) if table is not None else None
        if n_actions is None or n_actions == len(catalog):
            return catalog, True
        return tuple(f"action_{k}" for k in range(n_actions)), True
    strings = [str(v) for v in values]
    if any(s in catalog for s in strings):
        return catalog, True  # read_logs names any value that is not the catalog's
    matches = [re.fullmatch(r"(.*?)(\d+)", s) for s in strings]
    prefixes = {m.group(1) for m in matches if m is not None}
    if matches and all(m is not None for m in matches) and len(prefixes) == 1:
        prefix = prefixes.pop()
        top = max(int(m.group(2)) for m in matches if m is not None)
        return tuple(f"{prefix}{k}" for k in range(top + 1)), True
    return catalog, True


def _check_file(path: Path, flag: str) -> None:
    if not path.exists():
        raise ValueError(f"argument {flag}: {str(path)!r} does not exist")


def _reward_model(name: str) -> Any:
    if name == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=100, random_state=0)


def _cmd_ope(args: argparse.Namespace) -> int:
    from campaignrl.logs.io import read_logs
    from campaignrl.ope.diagnostics import diagnose, importance_weights, require_support
    from campaignrl.ope.target import as_target, load_target_table

    names = _estimator_names(args)
    if args.interval is None:
        args.interval = "bootstrap" if args.sequential else "studentized"
    elif args.interval == "studentized" and args.sequential:
        raise ValueError(
            "argument --interval: studentized is for bandit estimators; "
            "with --sequential use bootstrap or normal"
        )
    _check_file(args.logs, "--logs")
    policy = table = None
    if args.policy is not None:
        _check_file(args.policy, "--policy")
        from campaignrl.policies import load_policy

        policy = load_policy(args.policy)
    else:
        _check_file(args.target_probs, "--target-probs")
        try:
            table = load_target_table(args.target_probs)
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --target-probs: {exc}") from None
    action_names, guessed = _action_names(args, policy, table)
    try:
        data = read_logs(args.logs, action_names=action_names)
    except (OSError, ValueError) as exc:
        hint = ""
        if guessed and any(
            what in str(exc) for what in ("must name a known action", "must be an action index")
        ):
            hint = " (the action names were guessed: pass --actions with them in index order)"
        raise ValueError(f"argument --logs: {exc}{hint}") from None
    if args.cluster == "episode" and data.episode_ids is None:
        raise ValueError(
            f"argument --cluster: episode needs an episode_id column, and {args.logs} has none"
        )
    if args.cluster == "row" and args.sequential:
        raise ValueError(
            "argument --cluster: row is for bandit estimators; sequential estimators "
            "always resample whole episodes"
        )
    if policy is not None:
        from campaignrl.ope.policy_target import policy_target

        target = policy_target(policy, data)
        target_label = str(args.policy)
    else:
        target = as_target(table, data, "--target-probs")
        target_label = str(args.target_probs)
    # Before any model is fitted: a weight that overflows, or a target without support.
    require_support(importance_weights(target, data))
    diagnostics = diagnose(data, target).to_dict()
    warnings = list(diagnostics.pop("warnings"))
    rng = np.random.default_rng(args.seed)
    model_seed, boot_seed = (int(s) for s in rng.integers(2**63, size=2))
    if args.sequential:
        estimates, extra = _run_sequential(names, args, data, target, model_seed, boot_seed)
        from campaignrl.ope.diagnostics import episode_warnings

        warnings += episode_warnings(
            int(extra["n_episodes"]), float(extra["episode_effective_sample_size"])
        )
    else:
        estimates, extra = _run_bandit(names, args, data, target, model_seed, boot_seed)
    diagnostics = {**diagnostics, **extra}
    result: dict[str, Any] = {
        "estimates": estimates,
        "diagnostics": diagnostics,
        "warnings": warnings,
        "logs": str(args.logs),
        "target": target_label,
        "sequential": bool(args.sequential),
    }
    if args.json:
        # An unbounded side of an interval (a studentized bound from a log with a handful of
        # informative rows) is infinite: JSON has no infinity, so it is written as null.
        for row in [*estimates, diagnostics]:
            for key, value in row.items():
                if isinstance(value, float) and not np.isfinite(value):
                    row[key] = None
        print(json.dumps(result, allow_nan=False))
    else:
        _print_table(result, args)
    return 0


def _run_bandit(
    names: list[str],
    args: argparse.Namespace,
    data: Any,
    target: Any,
    model_seed: int,
    boot_seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from campaignrl.ope.evaluate import evaluate
    from campaignrl.ope.reward_model import CrossFittedRewardModel

    estimators = _bandit_estimators(names, args)
    q_hat = None
    if any(e.needs_reward_model for e in estimators):
        model = CrossFittedRewardModel(_reward_model(args.reward_model))
        what = f"fitting the reward model ({args.reward_model}, {model.n_folds} folds)"
        with progress_bar(what, total=model.work(data)) as advance:
            q_hat = model.fit_predict(data, rng=model_seed, progress=advance)
    what = "estimating" + ("" if args.interval == "normal" else f" ({args.bootstrap} resamples)")
    with progress_bar(what, total=len(estimators)) as advance:
        result = evaluate(
            data,
            target,
            estimators,
            estimated_rewards=q_hat,
            method=args.interval,
            n_bootstrap=args.bootstrap,
            rng=boot_seed,
            cluster=args.cluster,
            progress=advance,
        )
    rows = []
    for name, est in zip(names, result.estimates, strict=True):
        row = est.to_dict()
        row["estimator"] = name
        rows.append(row)
    extra = {"reward_model": args.reward_model if q_hat is not None else None}
    return rows, extra


def _run_sequential(
    names: list[str],
    args: argparse.Namespace,
    data: Any,
    target: Any,
    model_seed: int,
    boot_seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from campaignrl.ope.sequential import (
        FittedQEvaluation,
        diagnose_trajectories,
        trajectories,
    )

    estimators = _sequential_estimators(names, args)
    episodes = diagnose_trajectories(data, target)
    q_hat = None
    if any(e.needs_q_model for e in estimators):
        if args.q_model == "ridge":
            from sklearn.linear_model import Ridge

            regressor: Any = Ridge(alpha=1.0)
        else:
            from sklearn.ensemble import HistGradientBoostingRegressor

            regressor = HistGradientBoostingRegressor(max_iter=100, random_state=0)
        fqe = FittedQEvaluation(regressor, gamma=args.gamma)
        what = f"fitting Q ({args.q_model}, {fqe.n_folds} folds)"
        with progress_bar(what, total=fqe.n_folds * trajectories(data).horizon) as advance:
            q_hat = fqe.fit_predict(data, target, rng=model_seed, progress=advance)
    rows = []
    what = "estimating" + ("" if args.interval == "normal" else f" ({args.bootstrap} resamples)")
    with progress_bar(what, total=len(estimators)) as advance:
        for est in estimators:
            row = est.estimate_interval(
                data,
                target,
                estimated_q=q_hat,
                method=args.interval,
                n_bootstrap=args.bootstrap,
                rng=np.random.default_rng(boot_seed),
            ).to_dict()
            row["gamma"] = args.gamma
            row["n_episodes"] = episodes["n_episodes"]
            rows.append(row)
            advance(1)
    return rows, {**episodes, "q_model": args.q_model if q_hat is not None else None}


def _print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(width=max(Console().width, 100))
    kind = f"sequential, gamma {args.gamma:g}" if args.sequential else "per decision"
    table = Table(title=f"OPE of {result['target']} on {result['logs']} ({kind})")
    for col in ("estimator", "value", "95% CI", "interval"):
        table.add_column(col, justify="left" if col == "estimator" else "right")
    for row in result["estimates"]:
        table.add_row(
            row["estimator"],
            f"{row['value']:.6g}",
            f"[{row['ci_low']:.6g}, {row['ci_high']:.6g}]",
            f"{row['method']}, by {row['cluster']}",
        )
    console.print(table)
    diag = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result["diagnostics"].items()
        if v is not None
    )
    console.print(f"diagnostics: {diag}", markup=False)
    for warning in result["warnings"]:
        console.print(Text(f"warning: {warning}", style="bold yellow"))


# --------------------------------------------------------------------------------------------
# logs import-obd
# --------------------------------------------------------------------------------------------


def _cmd_import_obd(args: argparse.Namespace) -> int:
    from campaignrl._fs import write_table_atomic
    from campaignrl.logs.io import read_logs
    from campaignrl.logs.schema import write_logs
    from campaignrl.ope.obd import import_obd, items_path, obd_action_names

    suffix = Path(args.out).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"argument --out: must end in .parquet or .csv, got {str(args.out)!r}")
    from campaignrl._fs import check_new_file

    check_new_file(args.out, "--out", overwrite=args.overwrite)
    check_new_file(items_path(args.out), "--out", overwrite=args.overwrite)  # the sidecar
    log, items = import_obd(args.dir, campaign=args.campaign)
    n_items = int(items["item_id"].max()) + 1 if len(items) else 0
    read_logs(log, action_names=obd_action_names(n_items))  # refuse what OPE would refuse
    path = write_logs(log, args.out)
    sidecar = write_table_atomic(items, items_path(args.out))
    print(
        f"wrote {len(log):,} decisions ({log['policy_version'].iloc[0] if len(log) else '-'}, "
        f"{n_items} items, {log['position'].nunique()} positions) to {path}; items to {sidecar}"
    )
    return 0
