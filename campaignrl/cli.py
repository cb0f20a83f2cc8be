"""The ``campaignrl`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``campaignrl: error: argument --x: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"campaignrl: error: {message}\n")


def _integer(minimum: int, label: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {label}, got {text!r}")
        return value

    return parse


_positive_int = _integer(1, "a positive integer")
_seed = _integer(0, "a non-negative integer")
_non_negative_int = _seed
_at_least_two = _integer(2, "an integer >= 2")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _choice(choices: Sequence[str]) -> Any:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}; got {text!r}")
        return text

    return parse


def _world_arg(names: Sequence[str]) -> Any:
    """A preset name, or a folder `fit-sim` wrote (its checksums are verified when it loads)."""

    def parse(text: str) -> str:
        if text in names:
            return text
        if not Path(text).is_dir():
            raise argparse.ArgumentTypeError(
                f"must be a preset ({', '.join(names)}) or a simulator folder written by "
                f"`campaignrl fit-sim`, got {text!r}"
            )
        from campaignrl.simulators.presets import load_world

        try:
            load_world(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


def _policy_arg(names: Sequence[str]) -> Any:
    def parse(text: str) -> str | Path:
        if text in names:
            return text
        if (Path(text) / "manifest.json").is_file():
            return Path(text)
        if (Path(text) / "policy" / "manifest.json").is_file():  # a `train` run folder
            return Path(text) / "policy"
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(names)}, an exported policy directory or a `train` run "
            f"folder; got {text!r}"
        )

    return parse


def _version() -> str:
    """The installed distribution's version (``unknown`` when run from an uninstalled tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("campaignrl")
    except PackageNotFoundError:
        return "unknown (not installed)"


_SETTINGS_USAGE = (
    "Set them with `campaignrl train --agent NAME --set KEY=VALUE` or an experiment's "
    "`params: {KEY: VALUE}`."
)


def _agent_settings(name: str, *, full: bool) -> str:
    """The settings of agent ``name`` (learner or baseline) as text, from the code."""
    from campaignrl._settings_doc import (
        baseline_setting_docs,
        config_setting_docs,
        format_settings,
    )
    from campaignrl.agents.baselines import BASELINES
    from campaignrl.agents.registry import LEARNERS, config_class

    if name in LEARNERS:
        cls = config_class(name)
        settings = config_setting_docs(cls, skip=("algorithm",))  # the name sets the algorithm
        return format_settings(f"{name} ({cls.__name__})", settings, full=full)
    return format_settings(f"{name} (baseline)", baseline_setting_docs(BASELINES[name]), full=full)


class _HelpSettings(argparse.Action):
    """``train --agent X --help-settings``: print X's settings and exit, like ``--help``."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        agent = getattr(namespace, "agent", None)
        if agent is None:
            parser.error(
                "argument --help-settings: give --agent before it "
                "(train --agent ppo --help-settings), or run `campaignrl agents`"
            )
        print(_agent_settings(agent, full=True))
        print(_SETTINGS_USAGE)
        parser.exit(0)


def _cmd_agents(args: argparse.Namespace) -> int:
    from campaignrl.agents.bandits import BANDIT_ALGORITHMS
    from campaignrl.agents.baselines import baseline_names
    from campaignrl.agents.registry import LEARNERS

    if args.agent is not None:
        print(_agent_settings(args.agent, full=True))
        print(_SETTINGS_USAGE)
        return 0
    print(
        "Learners (campaignrl train --agent NAME; an experiment's agents) and their settings. "
        "`campaignrl agents NAME` prints one agent's with the whole docs.\n"
    )
    bandits = [n for n in LEARNERS if n in BANDIT_ALGORITHMS]
    print(_agent_settings(bandits[0], full=False).replace(bandits[0], ", ".join(bandits), 1))
    for name in LEARNERS:
        if name not in BANDIT_ALGORITHMS:
            print(f"\n{_agent_settings(name, full=False)}")
    print("\nBaselines (no training; experiments take the settings below):")
    for name in baseline_names():
        print(_agent_settings(name, full=False))
    print(f"\n{_SETTINGS_USAGE}")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from campaignrl.agents.baselines import baseline_names
    from campaignrl.agents.registry import LEARNERS
    from campaignrl.simulators.presets import world_names

    worlds, policies, learners = world_names(), baseline_names(), LEARNERS
    parser = _Parser(prog="campaignrl", description="Reinforcement-learning campaign optimizer.")
    parser.add_argument(
        "--version", action="version", version=f"campaignrl {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def population(p: argparse.ArgumentParser, customers: int, periods: int) -> None:
        p.add_argument(
            "--world",
            type=_world_arg(worlds),
            default="retail",
            metavar="WORLD|SIMDIR",
            help=f"preset world ({', '.join(worlds)}; default: retail) or a simulator folder "
            "written by `campaignrl fit-sim`",
        )
        # Its own flag (not an alias) so that an error names the flag the user typed.
        p.add_argument(
            "--sim",
            dest="world",
            type=_world_arg(worlds),
            default=argparse.SUPPRESS,
            metavar="SIMDIR",
            help="a simulator folder written by `campaignrl fit-sim` (same as --world SIMDIR)",
        )
        p.add_argument(
            "--customers",
            type=_positive_int,
            default=customers,
            help=f"customers simulated (default: {customers})",
        )
        p.add_argument(
            "--periods",
            type=_positive_int,
            default=periods,
            help=f"periods (weeks) in the campaign (default: {periods})",
        )
        p.add_argument("--seed", type=_seed, default=0, help="seed of the run (default: 0)")

    qs = sub.add_parser(
        "quickstart", help="run experiments/quickstart.yaml: baselines and learners on retail"
    )
    qs.set_defaults(handler=_cmd_quickstart)
    qs.add_argument(
        "--config",
        type=Path,
        default=None,
        help="experiment YAML (default: experiments/quickstart.yaml of this checkout)",
    )
    qs.add_argument(
        "--out",
        type=Path,
        default=Path("campaignrl-out/quickstart"),
        help="results folder (default: campaignrl-out/quickstart)",
    )
    qs.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the previous run's results in --out (only the files its run.json lists)",
    )

    q = sub.add_parser("baselines", help="simulate a world and compare every baseline")
    q.set_defaults(handler=_cmd_baselines)
    population(q, 50_000, 26)
    q.add_argument(
        "--out",
        type=Path,
        default=Path("campaignrl-out/baselines"),
        help="folder for summary.csv and the plot",
    )

    s = sub.add_parser("simulate", help="write decision logs of a (noisy) policy")
    s.set_defaults(handler=_cmd_simulate)
    population(s, 10_000, 26)
    s.add_argument(
        "--policy",
        type=_policy_arg(policies),
        default="random",
        help=f"logging policy: {', '.join(policies)}, or an exported policy directory",
    )
    s.add_argument(
        "--epsilon",
        type=_probability,
        default=0.0,
        help="share of uniform exploration mixed into the policy, in [0, 1]",
    )
    s.add_argument(
        "--out",
        type=Path,
        required=True,
        help="log file (.parquet or .csv), or a folder (no suffix): a partitioned Parquet "
        "dataset written block by block in bounded memory",
    )
    s.add_argument(
        "--chunk-customers",
        type=_positive_int,
        default=None,
        metavar="C",
        help="customers per part file of a folder --out (default: 250000; whole blocks of "
        "10000, which fix the randomness: the rows do not depend on C)",
    )
    s.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="write the parts of a folder --out as Ray tasks: local, auto or a cluster address "
        '(--out on storage every node sees); needs pip install "campaignrl[ray]"',
    )
    s.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file or dataset"
    )

    e = sub.add_parser("evaluate", help="value per customer of a policy, with a 95%% interval")
    e.set_defaults(handler=_cmd_evaluate)
    population(e, 50_000, 26)
    e.add_argument(
        "--policy",
        type=_policy_arg(policies),
        required=True,
        help=f"policy: {', '.join(policies)}, an exported policy directory or a train run folder",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")

    c = sub.add_parser("calibrate", help="a world's per-send rates beside industry ranges")
    c.set_defaults(handler=_cmd_calibrate)
    population(c, 20_000, 26)
    c.add_argument(
        "--send-rate",
        type=_probability,
        default=0.5,
        help="chance per period that a customer is sent something (default: 0.5)",
    )
    ag = sub.add_parser("agents", help="every agent's settings, with defaults and docs")
    ag.set_defaults(handler=_cmd_agents)
    ag.add_argument(
        "agent",
        nargs="?",
        type=_choice((*learners, *policies)),
        help="one agent (learner or baseline): its settings with their whole docs",
    )
    t = sub.add_parser("train", help="train a learning agent and export its policy")
    t.set_defaults(handler=_cmd_train)
    population(t, 10_000, 26)
    t.add_argument(
        "--agent", type=_choice(learners), required=True, help=f"agent: {', '.join(learners)}"
    )
    t.add_argument(
        "--timesteps", type=_positive_int, required=True, help="training budget in customer-steps"
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an agent setting (repeatable), e.g. --set epsilon=0.1",
    )
    t.add_argument(
        "--help-settings",
        action=_HelpSettings,
        help="print the settings of --agent (given before it) with defaults and docs, and exit",
    )
    t.add_argument(
        "--evals",
        type=_non_negative_int,
        default=10,
        help="evaluations of the policy during training, on a fixed population (0: none)",
    )
    t.add_argument(
        "--eval-customers",
        type=_at_least_two,
        default=5_000,
        help="customers of each evaluation during training",
    )
    t.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder: config.json, learning_curve.csv, policy/",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous train run's config.json, learning_curve.csv and policy/ in --out",
    )

    x = sub.add_parser("experiment", help="run experiment configs (YAML)")
    xsub = x.add_subparsers(dest="experiment_command", required=True, parser_class=_Parser)
    xr = xsub.add_parser("run", help="train and evaluate every agent of a config")
    xr.set_defaults(handler=_cmd_experiment_run)
    xr.add_argument("config", type=Path, help="experiment YAML (see experiments/)")
    xr.add_argument("--out", type=Path, required=True, help="results folder (new or empty)")
    xr.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the previous run's results in --out (only the files its run.json lists)",
    )
    xr.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run each (agent, seed) as a Ray task: local (this machine, the default), auto "
        "(the cluster of `ray start --head` here) or a cluster address; needs "
        'pip install "campaignrl[ray]"',
    )
    from campaignrl.scale.sweep_cli import add_sweep_parser

    add_sweep_parser(xsub)
    _register_ope(sub)
    from campaignrl.simulators.fit.commands import add_parser as add_fit_sim

    add_fit_sim(sub)
    from campaignrl.service.commands import register as register_service

    register_service(sub, _Parser)
    return parser


def _number(low: float, high: float | None, what: str, *, open_low: bool = False) -> Any:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if (
            not np.isfinite(value)
            or value < low
            or (open_low and value == low)
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


def _register_ope(sub: Any) -> None:
    """``ope`` and the ``logs`` group (``import-obd`` here, ``export`` from the service)."""
    from campaignrl.ope.commands import (
        BANDIT_NAMES,
        DEFAULT_BANDIT,
        DEFAULT_SEQUENTIAL,
        Q_MODELS,
        REWARD_MODELS,
        SEQUENTIAL_NAMES,
    )
    from campaignrl.ope.intervals import MIN_BOOTSTRAP

    positive = _number(0.0, None, "a positive number", open_low=True)
    p = sub.add_parser("ope", help="off-policy evaluation of a target policy on decision logs")
    p.set_defaults(handler=_cmd_ope)
    p.add_argument(
        "--logs",
        type=Path,
        required=True,
        help="decision log (.parquet or .csv), or a folder or quoted glob of Parquet files: "
        "streamed in record batches with bounded memory (bandit estimators, Poisson "
        "bootstrap over hashed customers)",
    )
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
        f"{', '.join(SEQUENTIAL_NAMES)} (default: {','.join(DEFAULT_BANDIT)} or "
        f"{','.join(DEFAULT_SEQUENTIAL)})",
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
        type=_integer(
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
        type=_choice(("studentized", "bootstrap", "normal")),
        default=None,
        help="95%% intervals: studentized (bootstrap-t, bandit estimators only; their "
        "default), bootstrap (percentile; the --sequential default) or normal (delta method)",
    )
    p.add_argument(
        "--cluster",
        type=_choice(("auto", "episode", "row")),
        default="auto",
        help="independent unit of the bandit intervals: episode (a customer's decisions move "
        "together: cluster-robust), row, or auto (default: episode when the log has "
        "episode_id)",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the folds and the bootstrap (default: 0)",
    )
    p.add_argument("--clip", type=positive, help="clip ipw weights at this")
    p.add_argument("--switch-tau", type=positive, help="weight threshold of switch-dr")
    p.add_argument("--dros-lambda", type=positive, help="shrinkage of dr-os")
    p.add_argument(
        "--wpdis-normalization",
        type=_choice(("reached", "absorbing")),
        default="reached",
        help="wpdis per step among episodes reaching it (reached) or all (absorbing)",
    )
    p.add_argument(
        "--reward-model",
        type=_choice(REWARD_MODELS),
        default=None,
        help="cross-fitted reward model of dm and the dr family (default: hgb, gradient "
        "boosting; ridge for a streamed log)",
    )
    p.add_argument(
        "--q-model",
        type=_choice(Q_MODELS),
        default="ridge",
        help="regressor of fitted Q evaluation (sdr, fqe; default: ridge, per action and step)",
    )
    p.add_argument(
        "--actions",
        help="comma-separated action names in index order (default: the policy's, the "
        "log's <stem>.items file, the catalog, or prefix_0..prefix_K inferred from the log)",
    )
    p.add_argument(
        "--batch-rows",
        type=_positive_int,
        default=262_144,
        help="streamed log: rows per record batch (default: 262144)",
    )
    p.add_argument(
        "--model-sample",
        type=_positive_int,
        default=1_000_000,
        help="streamed log: about how many rows (whole customers, by hashed id) the reward "
        "model is fitted on (default: 1000000)",
    )
    p.add_argument(
        "--model-folds",
        type=_integer(2, "an integer >= 2"),
        default=2,
        help="streamed log: cross-fitting folds of hashed customer ids (default: 2)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="streamed log: threads over files (default: the CPUs); results do not depend on it",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="streamed log: one Ray task per file (local, auto or a cluster address); needs "
        'pip install "campaignrl[ray]"',
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")

    logs = sub.add_parser("logs", help="decision-log utilities")
    logs_sub = logs.add_subparsers(dest="logs_command", required=True, parser_class=_Parser)
    from campaignrl.service.commands import register_logs_export  # `logs export` (the service)

    register_logs_export(logs_sub, _Parser)
    imp = logs_sub.add_parser(
        "import-obd", help="convert an Open Bandit Dataset campaign folder to our log schema"
    )
    imp.set_defaults(handler=_cmd_import_obd)
    imp.add_argument("dir", type=Path, metavar="DIR", help="OBD folder (campaign CSV + items)")
    imp.add_argument("--out", type=Path, required=True, help="log file (.parquet or .csv)")
    imp.add_argument("--overwrite", action="store_true", help="replace existing --out files")
    imp.add_argument("--campaign", help="campaign CSV stem (default: the folder's only one)")


_ESTIMATOR_FLAGS: dict[str, dict[str, str]] = {
    "ipw": {"lambda_": "clip"},
    "switch-dr": {"tau": "switch_tau"},
    "dr-os": {"lambda_": "dros_lambda"},
    "wpdis": {"normalization": "wpdis_normalization"},
}
"""which flag (``args`` attribute) sets which field of an estimator, beyond ``gamma``"""


def _estimator_names(args: argparse.Namespace) -> list[str]:
    """``--estimators`` as registry names (aliases resolved), checked against ``--sequential``."""
    from campaignrl.ope.commands import (
        BANDIT_NAMES,
        DEFAULT_BANDIT,
        DEFAULT_SEQUENTIAL,
        ESTIMATOR_ALIASES,
        SEQUENTIAL_NAMES,
    )

    allowed = SEQUENTIAL_NAMES if args.sequential else BANDIT_NAMES
    if args.estimators is None:
        return list(DEFAULT_SEQUENTIAL if args.sequential else DEFAULT_BANDIT)
    names = [ESTIMATOR_ALIASES.get(s.strip(), s.strip()) for s in str(args.estimators).split(",")]
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


def _build_estimators(names: list[str], args: argparse.Namespace) -> list[Any]:
    """Each named estimator from its registry, its fields set from the flags.

    A field without a default (switch-dr's ``tau``, dr-os's ``lambda_``) has no neutral
    value: its flag is then required.
    """
    import dataclasses

    from campaignrl.ope.estimators import ESTIMATORS
    from campaignrl.ope.sequential import SEQUENTIAL_ESTIMATORS

    registry: dict[str, Any] = SEQUENTIAL_ESTIMATORS if args.sequential else ESTIMATORS
    out = []
    for name in names:
        cls = registry[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        if "gamma" in fields and args.sequential:
            kwargs["gamma"] = args.gamma
        for field, dest in _ESTIMATOR_FLAGS.get(name, {}).items():
            value = getattr(args, dest)
            required = (
                fields[field].default is dataclasses.MISSING
                and fields[field].default_factory is dataclasses.MISSING
            )
            if value is None and required:
                flag = f"--{dest.replace('_', '-')}"
                raise ValueError(f"argument {flag}: required by {name} (no neutral value)")
            if value is not None:
                kwargs[field] = value
        out.append(cls(**kwargs))
    return out


def _cmd_ope(args: argparse.Namespace) -> int:
    from campaignrl.ope.commands import OPEJob, ope_json, print_ope_table, run_ope
    from campaignrl.ope.stream import is_stream_source

    names = _estimator_names(args)
    job = OPEJob(
        logs=args.logs,
        policy=args.policy,
        target_probs=args.target_probs,
        names=tuple(names),
        estimators=tuple(_build_estimators(names, args)),
        sequential=args.sequential,
        gamma=args.gamma,
        interval=args.interval,
        bootstrap=args.bootstrap,
        cluster=args.cluster,
        seed=args.seed,
        # Gradient boosting predicts every action of every row: too slow for a streamed log.
        reward_model=args.reward_model or ("ridge" if is_stream_source(args.logs) else "hgb"),
        q_model=args.q_model,
        actions=args.actions,
    )
    if is_stream_source(args.logs):
        from campaignrl.ope.commands import StreamOptions, run_ope_stream

        stream = StreamOptions(
            batch_rows=args.batch_rows,
            model_sample=args.model_sample,
            model_folds=args.model_folds,
            workers=args.workers,
            ray=args.ray,
        )
        result = run_ope_stream(job, stream)
    else:
        for flag, value in (("--ray", args.ray), ("--workers", args.workers)):
            if value is not None:
                raise ValueError(
                    f"argument {flag}: only for a streamed log (--logs a folder or a glob), "
                    f"got --logs {str(args.logs)!r}"
                )
        result = run_ope(job)
    if args.json:
        print(ope_json(result))
    else:
        print_ope_table(result, job)
    return 0


def _cmd_import_obd(args: argparse.Namespace) -> int:
    from campaignrl.ope.commands import import_obd_log

    print(import_obd_log(args.dir, args.out, campaign=args.campaign, overwrite=args.overwrite))
    return 0


def _make_policy(name: str | Path, world: str, periods: int, seed: int) -> Any:
    from campaignrl.agents.baselines import make_baseline
    from campaignrl.simulators.presets import load_world

    if isinstance(name, Path):
        from campaignrl.envs.observation import ObservationEncoder
        from campaignrl.policies.artifacts import load_policy, read_manifest
        from campaignrl.rollout import FeaturePolicy, check_policy_fit

        spec = load_world(world)
        try:
            loaded = FeaturePolicy(load_policy(name), name=str(name))
            loaded.check_compatible(
                ObservationEncoder(spec, periods).feature_names, spec.catalog.action_names
            )
            training = read_manifest(name).get("training")
        except ValueError as exc:  # the library's message, with the argument it concerns
            said = str(exc)
            where = "" if str(name) in said else f"{str(name)!r}: "
            raise ValueError(f"argument --policy: {where}{said}") from None
        for warning in check_policy_fit(
            training if isinstance(training, dict) else {}, world, periods
        ):
            print(f"campaignrl: warning: --policy {str(name)!r}: {warning}", file=sys.stderr)
        return loaded
    policy = make_baseline(name)
    # The pilot of static-best gets its own stream so it never sees the evaluated population.
    policy.fit(load_world(world), periods, np.random.default_rng([seed, 1]))
    return policy


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from campaignrl.rollout import run_policy

    policy = _make_policy(args.policy, args.world, args.periods, args.seed)
    result = run_policy(
        args.world,
        policy,
        n_customers=args.customers,
        horizon=args.periods,
        seed=args.seed,
        progress=not args.json,
    )
    summary = {
        "world": args.world,
        "policy": policy.describe(),
        "seed": args.seed,
        **result.summary(),
    }
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        lo, hi = summary["ci95"]
        interval = "no interval with one customer" if lo is None else f"[{lo:.3f}, {hi:.3f}]"
        print(
            f"{summary['policy']} on {args.world}: {summary['value_per_customer']:.3f} profit per "
            f"customer over {args.periods} periods, 95% CI {interval} "
            f"(n={args.customers:,}, contact rate {summary['contact_rate']:.1%})"
        )
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from campaignrl._fs import check_new_file
    from campaignrl.logs.schema import write_logs
    from campaignrl.rollout import run_policy

    suffix = Path(args.out).suffix.lower()
    if not suffix:
        return _simulate_dataset(args)
    if suffix not in (".parquet", ".csv"):
        raise ValueError(
            f"argument --out: must end in .parquet or .csv (a file), or have no suffix (a "
            f"folder: a partitioned Parquet dataset), got {str(args.out)!r}"
        )
    for flag, value in (("--chunk-customers", args.chunk_customers), ("--ray", args.ray)):
        if value is not None:
            raise ValueError(
                f"argument {flag}: only with a folder --out (no .parquet/.csv suffix), got "
                f"--out {str(args.out)!r}"
            )
    check_new_file(args.out, "--out", overwrite=args.overwrite)
    policy = _make_policy(args.policy, args.world, args.periods, args.seed)
    version = f"{policy.describe()}+eps{args.epsilon:g}"
    result = run_policy(
        args.world,
        policy,
        n_customers=args.customers,
        horizon=args.periods,
        seed=args.seed,
        epsilon=args.epsilon,
        record=True,
        policy_version=version,
        progress=True,
    )
    if result.log is None:  # record=True always builds the log
        raise RuntimeError("run_policy(record=True) returned no log")
    path = write_logs(result.log, args.out)
    print(
        f"wrote {len(result.log):,} decisions ({args.customers:,} customers x {args.periods} "
        f"periods, policy {version}) to {path}"
    )
    return 0


def _simulate_dataset(args: argparse.Namespace) -> int:
    from campaignrl.logs.scaled import check_dataset_out, simulate_dataset

    check_dataset_out(args.out, "argument --out", overwrite=args.overwrite)  # before the work
    policy = _make_policy(args.policy, args.world, args.periods, args.seed)
    version = f"{policy.describe()}+eps{args.epsilon:g}"
    info = simulate_dataset(
        args.out,
        world=args.world,
        policy=policy,
        customers=args.customers,
        periods=args.periods,
        seed=args.seed,
        chunk_customers=args.chunk_customers or 250_000,
        epsilon=args.epsilon,
        policy_version=version,
        ray_address=args.ray,
        overwrite=args.overwrite,
        progress=True,
    )
    print(
        f"wrote {info.rows:,} decisions ({args.customers:,} customers x {args.periods} periods, "
        f"policy {version}) to {info.path}/ ({info.parts} part files)"
    )
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from campaignrl.agents.baselines import baseline_names
    from campaignrl.plots import plot_policy_comparison
    from campaignrl.rollout import run_policy

    if args.out.exists() and not args.out.is_dir():  # refused before the work, not after
        raise ValueError(f"argument --out: {str(args.out)!r} is a file, not a folder")
    console = Console(width=max(Console().width, 100))
    rows, curves = [], []
    for name in baseline_names():
        policy = _make_policy(name, args.world, args.periods, args.seed)
        res = run_policy(
            args.world,
            policy,
            n_customers=args.customers,
            horizon=args.periods,
            seed=args.seed,
            progress=True,
        )
        s = res.summary()
        rows.append(
            {
                "policy": name,
                "detail": policy.describe(),
                "value_per_customer": s["value_per_customer"],
                "ci95_low": s["ci95"][0],
                "ci95_high": s["ci95"][1],
                "contact_rate": s["contact_rate"],
            }
        )
        curves.append(res.reward_per_period)
    frame = pd.DataFrame(rows).sort_values("value_per_customer", ascending=False)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "summary.csv", index=False)
    plot = plot_policy_comparison(
        [r["policy"] for r in rows],
        [r["value_per_customer"] for r in rows],
        [r["ci95_low"] for r in rows],
        [r["ci95_high"] for r in rows],
        curves,
        args.out / "values.png",
        f"{args.world}: {args.customers:,} customers, {args.periods} weeks, seed {args.seed}",
    )
    base = float(frame.loc[frame.policy == "no-contact", "value_per_customer"].iloc[0])
    table = Table(
        title=f"Baselines on '{args.world}' ({args.customers:,} customers, "
        f"{args.periods} periods, seed {args.seed})"
    )
    for col in ("policy", "profit / customer", "95% CI", "vs no-contact", "contact rate"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in frame.itertuples():
        no_interval = pd.isna(r.ci95_low) or pd.isna(r.ci95_high)
        table.add_row(
            r.detail,
            f"{r.value_per_customer:.2f}",
            "-" if no_interval else f"[{r.ci95_low:.2f}, {r.ci95_high:.2f}]",
            f"{r.value_per_customer - base:+.2f}",
            f"{r.contact_rate:.0%}",
        )
    console.print(table)
    console.print(f"wrote {args.out / 'summary.csv'} and {plot}")
    return 0


def _parse_settings(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    from campaignrl._yaml import describe_error, strict_load

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"argument --set: must be KEY=VALUE, got {item!r}")
        try:  # numbers (3e-4 included), booleans, lists as in YAML
            settings[key.strip()] = strict_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(
                f"argument --set: {key.strip()}: not a YAML value ({describe_error(exc)}), "
                f"got {value!r}"
            ) from None
    return settings


_TRAIN_FILES = ("config.json", "learning_curve.csv", "policy")
"""what ``train`` writes in its --out folder (the policy last: a run without it is unfinished)"""
_POLICY_FILES = ("manifest.json", "weights.npz")


def _train_out(out: Path, *, overwrite: bool) -> list[Path]:
    """Check ``train --out``; return the previous run's files ``--overwrite`` will replace.

    Nothing is deleted here: the caller removes them once the new run is trained. A
    ``policy`` folder holding anything but a policy's two files is never replaced.
    """
    from campaignrl._fs import remove_orphan_temps

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"argument --out: {str(out)!r} is a file, not a folder")
    existing = [out / n for n in _TRAIN_FILES if (out / n).exists() or (out / n).is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"argument --out: {str(out)!r} already holds a train run "
            f"({', '.join(p.name for p in existing)}); pass --overwrite to replace it"
        )
    for path in existing:
        foreign = path.is_symlink() or (path.name == "policy") != path.is_dir()
        if path.name == "policy" and not foreign:
            foreign = any(e.name not in _POLICY_FILES or not e.is_file() for e in path.iterdir())
        if foreign:
            raise FileExistsError(
                f"argument --out: {str(path)!r} is not a file a train run writes; nothing was "
                "replaced (move it away or choose another --out)"
            )
    # Temporary entries of atomic writes a killed run left: .policy.XXXXXXXX and the like.
    remove_orphan_temps(out, _TRAIN_FILES, contents=_POLICY_FILES)
    return existing


def _cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from campaignrl._fs import write_table_atomic, write_text_atomic
    from campaignrl.agents.base import MAX_CUSTOMERS
    from campaignrl.agents.evaluation import PolicyEvaluator
    from campaignrl.agents.registry import (
        SettingError,
        build_config,
        check_sizes,
        make_agent,
        training_budget,
    )
    from campaignrl.envs.vector import CampaignVectorEnv
    from campaignrl.policies.artifacts import save_policy
    from campaignrl.simulators.presets import load_world

    params = _parse_settings(args.set)
    for flag, value in (("--customers", args.customers), ("--eval-customers", args.eval_customers)):
        if value > MAX_CUSTOMERS:
            raise ValueError(f"argument {flag}: must be at most {MAX_CUSTOMERS:,}, got {value}")
    try:
        settings = build_config(args.agent, params)
        check_sizes(
            args.agent,
            settings,
            world=load_world(args.world),
            n_customers=args.customers,
            horizon=args.periods,
        )
        budget = training_budget(
            args.agent,
            settings,
            timesteps=args.timesteps,
            n_customers=args.customers,
            horizon=args.periods,
        )
    except SettingError as exc:
        field = f"{exc.setting}: " if exc.setting else ""
        raise ValueError(f"argument --set: {field}{exc.problem}") from None
    except ValueError as exc:  # the budget: `timesteps` must be <= ...
        raise ValueError(f"argument --timesteps: {exc}") from None
    out = Path(args.out)
    previous = _train_out(out, overwrite=args.overwrite)
    print(f"{args.agent}: {budget.describe()}", flush=True)
    env = CampaignVectorEnv(args.customers, world=args.world, horizon=args.periods)
    agent = make_agent(
        args.agent, env, params=params, total_timesteps=budget.timesteps, seed=args.seed
    )
    evaluator = PolicyEvaluator.spread(
        env.simulator.spec,
        args.periods,
        timesteps=budget.timesteps,
        evaluations=args.evals,
        n_customers=args.eval_customers,
        seed=args.seed + 2_000_003,
    )
    result = agent.learn(budget.timesteps, progress=True, evaluator=evaluator)
    config = {
        "world": args.world,
        "agent": args.agent,
        "params": params,
        "customers": args.customers,
        "periods": args.periods,
        "seed": args.seed,
        "timesteps": result.timesteps,
        "timesteps_requested": args.timesteps,
        "train_seconds": result.seconds,
    }
    written: list[Path] = []
    try:
        for path in previous:  # --overwrite: the previous run's files, checked above
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        written.append(write_text_atomic(out / "config.json", json.dumps(config, indent=2) + "\n"))
        written.append(write_table_atomic(result.learning_curve, out / "learning_curve.csv"))
        save_policy(agent.policy(), out / "policy", training=config)  # last: marks it finished
    except BaseException:
        for path in written:  # interrupted: leave nothing that looks like a finished run
            path.unlink(missing_ok=True)
        raise
    curve = result.learning_curve
    last = curve["value_per_customer"].iloc[-1] if len(curve) else float("nan")
    evaluated = ""
    if evaluator is not None and len(curve):
        final = curve.iloc[-1]
        evaluated = (
            f", final policy on {args.eval_customers:,} evaluation customers: "
            f"{final.eval_value:.2f} [{final.eval_ci95_low:.2f}, {final.eval_ci95_high:.2f}]"
        )
    print(
        f"trained {args.agent} on {args.world} for {result.timesteps:,} customer-steps in "
        f"{result.seconds:.1f}s (last training campaign: {last:.2f} per customer{evaluated}); "
        f"policy in {out / 'policy'}"
    )
    return 0


_QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
"""the checkout's quickstart config (the README installs campaignrl editable from a clone)"""


def _cmd_quickstart(args: argparse.Namespace) -> int:
    if args.config is None:
        if not _QUICKSTART.is_file():
            raise ValueError(
                f"argument --config: no default config at {str(_QUICKSTART)!r}; "
                "pass --config experiments/quickstart.yaml from a campaignrl checkout"
            )
        args.config = _QUICKSTART
    return _cmd_experiment_run(args)


def _cmd_experiment_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from campaignrl.experiments import load_config, run_experiment

    runner = None
    address = getattr(args, "ray", None)  # `quickstart` has no --ray
    if address is not None:
        from campaignrl.scale.ray_runner import ray_runner, require_ray

        if not str(address).strip():
            raise ValueError("argument --ray: must be local, auto or a cluster address, got ''")
        require_ray()  # before anything is written: one line saying how to install it
        runner = ray_runner(address)
    config = load_config(args.config)
    for spec in config.agents:  # say up front how each budget is rounded
        budget = config.budget(spec)
        if budget is not None and budget.timesteps != budget.requested:
            print(f"{spec.name}: {budget.describe()}", flush=True)
    try:
        summary = run_experiment(config, args.out, overwrite=args.overwrite, runner=runner)
    except FileExistsError as exc:
        raise FileExistsError(f"argument --out: {str(exc).removeprefix('`out` ')}") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"{str(args.out)!r} holds no finished results (no DONE.json); run again with "
            "--overwrite to replace them"
        ) from None
    table = Table(title=f"{config.name} ({config.world}, seeds {config.seeds})")
    for col in ("agent", "profit / customer", "95% CI", "contact rate", "training (s)"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for r in summary.itertuples():
        table.add_row(
            str(r.agent),
            f"{r.value_per_customer:.2f}",
            f"[{r.ci95_low:.2f}, {r.ci95_high:.2f}]",
            f"{r.contact_rate:.0%}",
            f"{r.train_seconds:.1f}",
        )
    Console(width=max(Console().width, 100)).print(table)
    print(f"wrote {Path(args.out) / 'summary.csv'}, report.md and plots in {args.out}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from campaignrl.simulators.calibration import (
        SURVEY_RANGES,
        calibration_report,
        out_of_range,
    )
    from campaignrl.simulators.presets import load_world

    report = calibration_report(
        load_world(args.world),
        send_rate=args.send_rate,
        n_customers=args.customers,
        horizon=args.periods,
        seed=args.seed,
    )
    flags = out_of_range(report)

    def cell(value: str, channel: str, key: str, column: str, i: int) -> Text:
        # Text, not markup: ranges such as [most] would otherwise be read as rich styles.
        ref = SURVEY_RANGES.get(channel, {}).get(key)
        out = bool(flags.at[i, column])
        text = value + (f" [{ref}]" if ref else "") + (" OUT" if out else "")
        return Text(text, style="bold red" if out else "")

    table = Table(
        title=f"'{args.world}' per send, send rate {args.send_rate:g} (survey range in "
        "brackets; OUT: outside it)"
    )
    for col in (
        "channel",
        "reachable",
        "opened",
        "converted",
        "win-back opened",
        "opted out",
        "cost",
    ):
        table.add_column(col, justify="left" if col == "channel" else "right")
    for r in report.itertuples():
        ch, i = str(r.channel), r.Index
        table.add_row(
            ch,
            cell(f"{r.reachable:.0%}", ch, "reachable", "reachable", i),
            cell(f"{r.opened:.1%}", ch, "opened", "opened", i),
            f"{r.converted:.2%}",
            f"{r.winback_opened:.1%}",
            cell(f"{r.opted_out:.2%}", ch, "opted_out", "opted_out", i),
            cell(f"${r.cost_per_send:g}", ch, "cost", "cost_per_send", i),
        )
    Console(width=max(Console().width, 130)).print(table)
    out = [
        f"{ch} {col}"
        for i, ch in enumerate(report["channel"])
        for col in flags.columns
        if flags.iloc[i][col]
    ]
    if out:
        print(f"outside the survey range: {', '.join(out)}")
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (tests capture it)
        pass


def _argument_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """How errors name each argument (``--out``, ``config``), by ``dest``, subcommands included."""
    names: dict[str, str] = {}
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.dest not in names:
                longs = [o for o in action.option_strings if o.startswith("--")]
                metavar = action.metavar if isinstance(action.metavar, str) else action.dest
                names[action.dest] = longs[0] if longs else metavar
    return names


def _os_error_message(
    exc: OSError, args: argparse.Namespace | None, parser: argparse.ArgumentParser
) -> str:
    """One line for a failed file operation, naming the argument whose path it concerns.

    ``argument --out: 'ro/x': Permission denied: 'ro/x/summary.csv'``: the first path
    argument (``--out``, ``--config``, ...) that is the failing file or a folder above it.
    """
    import os

    detail = exc.strerror or str(exc)
    files = [os.fsdecode(f) for f in (exc.filename, exc.filename2) if f is not None]
    if not files:
        return detail
    names = _argument_names(parser)
    for dest, value in sorted(vars(args or argparse.Namespace()).items()):
        if not isinstance(value, Path) or dest not in names:
            continue
        given = os.path.abspath(value)
        for file in files:
            target = os.path.abspath(file)
            if target == given or target.startswith(given.rstrip(os.sep) + os.sep):
                inside = "" if target == given else f": {file!r}"
                return f"argument {names[dest]}: {str(value)!r}: {detail}{inside}"
    return f"{detail}: {' -> '.join(repr(f) for f in files)}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``campaignrl`` console script; returns the exit code.

    Bad input (``ValueError``) and failed file operations (``OSError``: permission denied,
    disk full, a folder where a file is needed...) end in one line and exit code 2; Ctrl-C in
    ``campaignrl: interrupted`` and 130, the shell's code for SIGINT.
    """
    parser = _build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        # The policies multiply small matrices: multi-threaded BLAS gains nothing on them and,
        # when the cores are busy, makes them up to ~40x slower (measured on LinUCB scoring).
        with threadpool_limits(limits=1, user_api="blas"):
            return int(args.handler(args))
    except ValueError as exc:
        print(f"campaignrl: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `campaignrl agents | head`: the reader left, nothing to say
        _silence_stdout()
        return 1
    except OSError as exc:
        print(f"campaignrl: error: {_os_error_message(exc, args, parser)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, the shell's code for SIGINT
        print(f"campaignrl: interrupted{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
