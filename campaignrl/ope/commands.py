"""The work of ``campaignrl ope`` and ``campaignrl logs import-obd`` (their flags: ``cli.py``).

:func:`run_ope` reads a log and a target, runs the estimators it is given and returns one
JSON-able result; :func:`print_ope_table` shows it; :func:`import_obd_log` converts an Open
Bandit Dataset campaign. Bad input raises ``ValueError`` naming the CLI argument it concerns
(the CLI prints it as one line and exits with code 2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from campaignrl._progress import progress_bar

__all__ = [
    "BANDIT_NAMES",
    "DEFAULT_BANDIT",
    "DEFAULT_SEQUENTIAL",
    "ESTIMATOR_ALIASES",
    "Q_MODELS",
    "REWARD_MODELS",
    "SEQUENTIAL_NAMES",
    "OPEJob",
    "import_obd_log",
    "print_ope_table",
    "ope_json",
    "run_ope",
]

BANDIT_NAMES: tuple[str, ...] = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")
"""``--estimators`` names without ``--sequential``: the estimators' own (obp's) names, the keys
of :data:`campaignrl.ope.estimators.ESTIMATORS`; ``dros`` is accepted for ``dr-os``"""
SEQUENTIAL_NAMES: tuple[str, ...] = ("pdis", "wpdis", "sdr", "fqe")
"""``--estimators`` names with ``--sequential``: the keys of
:data:`campaignrl.ope.sequential.SEQUENTIAL_ESTIMATORS`"""
DEFAULT_BANDIT = ("ipw", "snipw", "dr")
DEFAULT_SEQUENTIAL = ("pdis", "wpdis", "sdr", "fqe")
ESTIMATOR_ALIASES = {"dros": "dr-os", "ips": "ipw", "snips": "snipw"}

REWARD_MODELS = ("hgb", "ridge", "logistic")
Q_MODELS = ("ridge", "hgb")


@dataclass(frozen=True)
class OPEJob:
    """One ``campaignrl ope`` evaluation: what to read, which estimators, which intervals."""

    logs: Path
    """the decision log (.parquet or .csv)"""
    policy: Path | None
    """an exported policy directory (the target), or ``None`` with ``target_probs``"""
    target_probs: Path | None
    """a target probability table (.npy/.parquet), or ``None`` with ``policy``"""
    names: tuple[str, ...]
    """the estimators' names, in the order of the output"""
    estimators: tuple[Any, ...]
    """the estimators, built from their registry (bandit or sequential, as ``sequential``)"""
    sequential: bool = False
    """trajectory estimators over episodes"""
    gamma: float = 1.0
    """discount of the sequential estimators"""
    interval: str | None = None
    """studentized, bootstrap or normal (``None``: studentized, or bootstrap if sequential)"""
    bootstrap: int = 1000
    """bootstrap resamples"""
    cluster: str = "auto"
    """independent unit of the bandit intervals: auto, episode or row"""
    seed: int = 0
    """seed of the folds and the bootstrap"""
    reward_model: str = "hgb"
    """reward model of dm and the dr family: one of :data:`REWARD_MODELS`"""
    q_model: str = "ridge"
    """regressor of fitted Q evaluation: one of :data:`Q_MODELS`"""
    actions: str | None = None
    """comma-separated action names in index order (``None``: found as ``--actions`` says)"""

    @property
    def method(self) -> str:
        """The interval method: ``interval``, or the default of the estimators' kind."""
        if self.interval is not None:
            return self.interval
        return "bootstrap" if self.sequential else "studentized"


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
    args: OPEJob, policy: Any, table: np.ndarray | None
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


def run_ope(args: OPEJob) -> dict[str, Any]:
    """Evaluate the job's target on its log; the result as JSON-able data.

    Returns ``estimates`` (one dict per estimator: value, interval, ...), ``diagnostics``,
    ``warnings``, ``logs``, ``target`` and ``sequential``.

    Raises:
        ValueError: Naming the CLI argument at fault (``argument --logs: ...``).
    """
    from campaignrl.logs.io import read_logs
    from campaignrl.ope.diagnostics import diagnose, importance_weights, require_support
    from campaignrl.ope.target import as_target, load_target_table

    names = list(args.names)
    if args.interval is None:
        args = _replace(args, interval=args.method)
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
        if args.target_probs is None:
            raise ValueError("argument --target-probs: give --policy or --target-probs")
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
    return result


def ope_json(result: dict[str, Any]) -> str:
    """``result`` as one line of JSON.

    An unbounded side of an interval (a studentized bound from a log with a handful of
    informative rows) is infinite: JSON has no infinity, so it is written as null.
    """
    for row in [*result["estimates"], result["diagnostics"]]:
        for key, value in row.items():
            if isinstance(value, float) and not np.isfinite(value):
                row[key] = None
    return json.dumps(result, allow_nan=False)


def _replace(job: OPEJob, **changes: Any) -> OPEJob:
    import dataclasses

    return dataclasses.replace(job, **changes)


@dataclass(frozen=True)
class StreamOptions:
    """How ``campaignrl ope`` streams a log that is a folder or a glob of Parquet files."""

    batch_rows: int = 262_144
    """rows per record batch"""
    model_sample: int = 1_000_000
    """about how many rows (whole customers, by hashed id) the reward model is fitted on"""
    model_folds: int = 2
    """cross-fitting folds of hashed customer ids"""
    workers: int | None = None
    """threads over files (``None``: the CPUs)"""
    ray: str | None = None
    """``None``, or a Ray address (``local``, ``auto``, ``HOST:PORT``): one task per file"""


def run_ope_stream(args: OPEJob, stream: StreamOptions) -> dict[str, Any]:
    """:func:`run_ope` for a partitioned log, streamed in record batches with bounded memory.

    The estimates equal the in-memory path's on the same rows and reward model
    (:func:`campaignrl.ope.stream.evaluate_stream`); intervals are a Poisson bootstrap over
    hashed buckets of customers, which does not depend on how the rows are split into files.

    Raises:
        ValueError: Naming the CLI argument at fault.
    """
    from campaignrl.ope.stream import evaluate_stream

    if args.sequential:
        raise ValueError(
            "argument --sequential: streamed logs (a folder or a glob) support the bandit "
            "estimators only"
        )
    if args.interval not in (None, "bootstrap"):
        raise ValueError(
            f"argument --interval: streamed logs use the Poisson bootstrap, got {args.interval!r}"
        )
    if args.target_probs is not None:
        from campaignrl.ope.target import load_target_table

        _check_file(args.target_probs, "--target-probs")
        try:
            target: Any = load_target_table(args.target_probs)
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --target-probs: {exc}") from None
        target_label = str(args.target_probs)
    else:
        if args.policy is None:
            raise ValueError("argument --policy: give --policy or --target-probs")
        _check_file(args.policy, "--policy")
        target, target_label = args.policy, str(args.policy)
    actions = None
    if args.actions:
        actions = [a.strip() for a in str(args.actions).split(",") if a.strip()]
        if not actions:
            raise ValueError(f"argument --actions: no action names in {args.actions!r}")
    needs_model = any(e.needs_reward_model for e in args.estimators)
    cluster = {"auto": "auto", "episode": "episode_id", "row": "decision_id"}[args.cluster]
    try:
        result = evaluate_stream(
            str(args.logs),
            target,
            list(args.estimators),
            action_names=actions,
            reward_model=_reward_model(args.reward_model) if needs_model else None,
            model_sample=stream.model_sample,
            model_folds=stream.model_folds,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
            cluster=cluster,
            batch_rows=stream.batch_rows,
            ray_address=stream.ray,
            workers=stream.workers,
            progress=True,
        )
    except (OSError, ValueError) as exc:
        raise ValueError(f"argument --logs: {exc}") from None
    out = result.to_dict()
    rows = []
    for name, row in zip(args.names, out["estimates"], strict=True):
        rows.append({**row, "estimator": name})
    diagnostics = {
        **out["diagnostics"],
        "reward_model": args.reward_model if needs_model else None,
        **{f"stream_{k}": v for k, v in out["stream"].items()},
    }
    return {
        "estimates": rows,
        "diagnostics": diagnostics,
        "warnings": out["warnings"],
        "logs": str(args.logs),
        "target": target_label,
        "sequential": False,
    }


def _one_thread() -> Any:
    """A context in which BLAS and OpenMP run on one thread, for the reward and Q model fits.

    The CLI limits BLAS only; gradient boosting's OpenMP threads spin-wait on a busy 2-core
    machine (measured: 51 s against 2.9 s on one thread for a 12,000-row log, see
    :mod:`campaignrl.simulators.fit.report`), and a ridge fit's multi-threaded BLAS took 15x
    the CPU time of one thread (4 s against 0.27 s on 500,000 rows), for the same model.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _run_bandit(
    names: list[str],
    args: OPEJob,
    data: Any,
    target: Any,
    model_seed: int,
    boot_seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from campaignrl.ope.evaluate import evaluate
    from campaignrl.ope.reward_model import CrossFittedRewardModel

    estimators = list(args.estimators)
    q_hat = None
    if any(e.needs_reward_model for e in estimators):
        model = CrossFittedRewardModel(_reward_model(args.reward_model))
        what = f"fitting the reward model ({args.reward_model}, {model.n_folds} folds)"
        with progress_bar(what, total=model.work(data)) as advance, _one_thread():
            q_hat = model.fit_predict(data, rng=model_seed, progress=advance)
    what = "estimating" + ("" if args.interval == "normal" else f" ({args.bootstrap} resamples)")
    with progress_bar(what, total=len(estimators)) as advance:
        result = evaluate(
            data,
            target,
            estimators,
            estimated_rewards=q_hat,
            method=args.method,
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
    args: OPEJob,
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

    estimators = list(args.estimators)
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
        horizon = trajectories(data).horizon
        with progress_bar(what, total=fqe.n_folds * horizon) as advance, _one_thread():
            q_hat = fqe.fit_predict(data, target, rng=model_seed, progress=advance)
    rows = []
    what = "estimating" + ("" if args.interval == "normal" else f" ({args.bootstrap} resamples)")
    with progress_bar(what, total=len(estimators)) as advance:
        for est in estimators:  # names and estimators go together (OPEJob)
            row = est.estimate_interval(
                data,
                target,
                estimated_q=q_hat,
                method=args.method,
                n_bootstrap=args.bootstrap,
                rng=np.random.default_rng(boot_seed),
            ).to_dict()
            row["gamma"] = args.gamma
            row["n_episodes"] = episodes["n_episodes"]
            rows.append(row)
            advance(1)
    return rows, {**episodes, "q_model": args.q_model if q_hat is not None else None}


def print_ope_table(result: dict[str, Any], args: OPEJob) -> None:
    """The result of :func:`run_ope` as a rich table, then diagnostics and warnings."""
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


def import_obd_log(
    folder: Path, out: Path, *, campaign: str | None = None, overwrite: bool = False
) -> str:
    """Convert an Open Bandit Dataset campaign folder to a decision log; say what was written.

    Writes the log to ``out`` (.parquet or .csv) and its items beside it (``<stem>.items``).

    Raises:
        ValueError: Naming ``--out`` or the OBD file at fault.
        FileExistsError: If ``out`` or its items file exists and ``overwrite`` is false.
    """
    from campaignrl._fs import write_table_atomic
    from campaignrl.logs.io import read_logs
    from campaignrl.logs.schema import write_logs
    from campaignrl.ope.obd import import_obd, items_path, obd_action_names

    suffix = Path(out).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ValueError(f"argument --out: must end in .parquet or .csv, got {str(out)!r}")
    from campaignrl._fs import check_new_file

    check_new_file(out, "--out", overwrite=overwrite)
    check_new_file(items_path(out), "--out", overwrite=overwrite)  # the sidecar
    log, items = import_obd(folder, campaign=campaign)
    n_items = int(items["item_id"].max()) + 1 if len(items) else 0
    read_logs(log, action_names=obd_action_names(n_items))  # refuse what OPE would refuse
    path = write_logs(log, out)
    sidecar = write_table_atomic(items, items_path(out))
    return (
        f"wrote {len(log):,} decisions ({log['policy_version'].iloc[0] if len(log) else '-'}, "
        f"{n_items} items, {log['position'].nunique()} positions) to {path}; items to {sidecar}"
    )
