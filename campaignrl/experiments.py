"""Experiments: a YAML config -> trained agents and baselines -> summary, report and plots.

A config names the world, the agents with their settings and training budgets, the seeds and
the evaluation size. For every seed, each learner is trained on its own population and its
exported policy (numpy, as the decision service would run it) is evaluated with the baselines
on one shared evaluation population (common random numbers). Results pool the evaluation
customers over seeds; seeds make a run repeatable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from campaignrl._fs import remove_orphan_temps, write_text_atomic
from campaignrl._progress import progress_label
from campaignrl._yaml import describe_error, strict_load
from campaignrl.agents.base import MAX_CUSTOMERS, MAX_TIMESTEPS
from campaignrl.agents.baselines import baseline_names, make_baseline
from campaignrl.agents.registry import (
    LEARNERS,
    SettingError,
    TrainingBudget,
    build_config,
    check_sizes,
    training_budget,
)
from campaignrl.plots import plot_learning_curves, plot_policy_comparison
from campaignrl.runs import (
    RunResult,
    curves_table,
    period_rewards,
    run_one,
    runs_table,
    summarize,
    write_run,
)
from campaignrl.simulators.presets import load_world, world_names
from campaignrl.simulators.spec import WorldSpec

__all__ = [
    "DONE",
    "RESULT_FILES",
    "RUN_MANIFEST",
    "AgentSpec",
    "ExperimentConfig",
    "Runner",
    "load_config",
    "run_experiment",
    "serial_runs",
    "write_results",
]

RUN_MANIFEST = "run.json"
"""written first: every path the run may create, so ``overwrite`` removes those and only those"""
DONE = "DONE.json"
"""the completion marker, written last: a folder without it holds no finished results"""
RESULT_FILES = (
    "runs.csv",
    "summary.csv",
    "learning_curves.csv",
    "values.png",
    "learning_curves.png",
    "report.md",
)
"""the results, written together at the end (staged, then moved in), before :data:`DONE`"""
_POLICY_FILES = frozenset({"manifest.json", "weights.npz"})
"""what a policy directory written by ``save_policy`` holds"""
_MAX_CONFIG_BYTES = 1_000_000
"""larger experiment files are refused before parsing (the shipped ones are under 2 KB)"""
_MAX_HORIZON = 5_000
_MAX_SEED = 2**32 - 1
_LINEAR = ("linucb", "lingreedy", "lints")
"""learners whose untrained model cannot be exported (MABWiser has no coefficients yet)"""


class Runner(Protocol):
    """Places an experiment's runs somewhere and yields their results as they finish."""

    def __call__(self, config: ExperimentConfig, *, progress: bool) -> Iterable[RunResult]:
        """Run every (agent, seed) of ``config``; yield each result once, in any order."""
        ...  # pragma: no cover


def _check_plain_name(value: str) -> str:
    """A label names a folder under ``policies/``: a plain name, never a path."""
    if (
        not value
        or value in (".", "..")
        or value.startswith(".")
        or "/" in value
        or "\\" in value
        or value != value.strip()
        or any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)
        or len(value) > 100
    ):
        raise ValueError(
            "must be a plain name (no '/' or '..', no leading '.', no control characters, at "
            f"most 100 characters), got {value!r}"
        )
    return value


class AgentSpec(BaseModel):
    """One contender: a learner with its settings and budget, or a baseline.

    The settings are checked against the agent's config class (learners) or constructor
    (baselines) when the spec is built; see :meth:`ExperimentConfig._whole` for the sizes.
    """

    model_config = ConfigDict(extra="forbid")

    agent: StrictStr = Field(description="learner or baseline name")
    label: StrictStr | None = Field(
        default=None, description="name in tables and folder under policies/ (default: agent)"
    )
    timesteps: StrictInt | None = Field(
        default=None,
        ge=0,
        le=MAX_TIMESTEPS,
        description="training budget, customer-steps; required for learners, rounded up to "
        "whole campaigns (PPO: rollouts)",
    )
    train_customers: StrictInt = Field(
        default=10_000, ge=1, le=MAX_CUSTOMERS, description="customers trained on"
    )
    params: dict[str, Any] = Field(default_factory=dict, description="the agent's settings")

    @field_validator("agent")
    @classmethod
    def _known(cls, value: str) -> str:
        known = (*LEARNERS, *baseline_names())
        if value not in known:
            raise ValueError(f"unknown agent {value!r}; agents are {', '.join(known)}")
        return value

    @field_validator("label")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return None if value is None else _check_plain_name(value)

    @model_validator(mode="after")
    def _settings(self) -> AgentSpec:
        """Budget and settings, by the agent's rules; messages start with the key."""
        if self.learns:
            if self.timesteps is None:
                raise ValueError(
                    "timesteps: a learner needs a training budget in customer-steps "
                    "(timesteps >= 1)"
                )
            if self.timesteps == 0 and self.agent in _LINEAR:
                raise ValueError(
                    f"timesteps: {self.agent} needs timesteps >= 1 (an untrained linear model "
                    "cannot be exported), got 0"
                )
            try:
                build_config(self.agent, self.params)
            except SettingError as exc:
                raise ValueError(f"{exc.setting or 'params'}: {exc.problem}") from None
        else:
            default = type(self).model_fields["train_customers"].default
            for key, unset in (("timesteps", None), ("train_customers", default)):
                if getattr(self, key) != unset:
                    raise ValueError(f"{key}: baselines are not trained; remove it")
            try:
                make_baseline(self.agent, **self.params)
            except (TypeError, ValueError) as exc:
                raise ValueError(_field_first(str(exc), "params")) from None
        return self

    @property
    def name(self) -> str:
        """Label in tables and folder name under ``policies/``."""
        return self.label or self.agent

    @property
    def learns(self) -> bool:
        """Whether this is a learner (trained) rather than a baseline."""
        return self.agent in LEARNERS

    def size_problem(self, world: WorldSpec, horizon: int) -> str | None:
        """What makes this learner too big for ``world`` over ``horizon``, or ``None``.

        The message starts with the offending setting (``params`` when no single one is to
        blame); baselines are never too big.
        """
        if not self.learns:
            return None
        try:
            check_sizes(
                self.agent,
                build_config(self.agent, self.params),
                world=world,
                n_customers=self.train_customers,
                horizon=horizon,
            )
        except SettingError as exc:
            return f"{exc.setting or 'params'}: {exc.problem}"
        return None


def _field_first(message: str, default: str) -> str:
    """``"`field` must be ..."`` -> ``"field: must be ..."`` (else ``"default: message"``)."""
    if message.startswith("`") and "` " in message:
        field, _, problem = message[1:].partition("` ")
        if field.isidentifier():
            return f"{field}: {problem}"
    return f"{default}: {message}"


class ExperimentConfig(BaseModel):
    """An experiment file (YAML), validated whole.

    Unknown keys, bad settings and sizes that cannot fit are refused by name before anything
    is written.
    """

    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=200, description="experiment name")
    world: StrictStr = Field(
        default="retail", description="preset world, or a simulator folder `fit-sim` wrote"
    )
    world_overrides: dict[str, Any] = Field(default_factory=dict, description="WorldSpec fields")
    horizon: StrictInt = Field(
        default=26, ge=1, le=_MAX_HORIZON, description="periods per campaign"
    )
    seeds: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1, max_length=1_000)
    eval_customers: StrictInt = Field(
        default=50_000, ge=2, le=MAX_CUSTOMERS, description="customers per evaluation"
    )
    training_evals: StrictInt = Field(
        default=10,
        ge=0,
        le=1_000,
        description="evaluations of each learner during training, on a fixed population "
        "(0: none); they make the learning curves",
    )
    training_eval_customers: StrictInt = Field(
        default=5_000,
        ge=2,
        le=MAX_CUSTOMERS,
        description="customers of the during-training evaluations",
    )
    agents: list[AgentSpec] = Field(min_length=1, max_length=100)
    sweep: dict[str, Any] | None = Field(
        default=None,
        description="hyperparameter sweep, run by `campaignrl experiment sweep` (checked "
        "there); `experiment run` ignores it",
    )

    @field_validator("world")
    @classmethod
    def _world(cls, value: str) -> str:
        # A fitted simulator folder is a world too (its checksums are checked by spec()).
        if value not in world_names() and not Path(value).is_dir():
            raise ValueError(
                f"unknown world {value!r}; worlds are {', '.join(world_names())}, or a "
                "simulator folder written by `campaignrl fit-sim`"
            )
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(not 0 <= s <= _MAX_SEED for s in value) or len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct integers in [0, {_MAX_SEED}], got {value}")
        return value

    @model_validator(mode="after")
    def _whole(self) -> ExperimentConfig:
        """What needs the whole config: the world, unique labels, sizes that must fit."""
        try:
            spec = self.spec()
        except (TypeError, ValueError) as exc:
            where = "world_overrides" if self.world_overrides else "world"
            raise ValueError(f"{where}: {exc}") from None
        seen: dict[str, int] = {}
        for i, a in enumerate(self.agents):
            first = seen.setdefault(a.name.casefold(), i)
            if first != i:
                raise ValueError(
                    f"agents.{i} ({a.agent}).label: agent labels must be unique (they name "
                    f"folders), {a.name!r} repeats agents.{first}'s; give one a label"
                )
            problem = a.size_problem(spec, self.horizon)
            if problem is not None:
                raise ValueError(f"agents.{i} ({a.agent}).{problem}")
        return self

    def spec(self) -> Any:
        """The world, overrides applied and validated."""
        return load_world(self.world, **self.world_overrides)

    def budget(self, agent: AgentSpec) -> TrainingBudget | None:
        """What ``agent`` really trains: its budget rounded up to whole campaigns.

        PPO rounds to rollouts; ``None`` for a baseline or a learner exported untrained
        (``timesteps: 0``).
        """
        if not agent.learns or not agent.timesteps:
            return None
        return training_budget(
            agent.agent,
            build_config(agent.agent, agent.params),
            timesteps=agent.timesteps,
            n_customers=agent.train_customers,
            horizon=self.horizon,
        )


def _error_lines(exc: ValidationError, raw: Any) -> list[str]:
    """One ``key: problem`` per pydantic error; agent entries read ``agents.3 (ppo).key``."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        parts = [str(x) for x in loc]
        if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int):
            agents = raw.get("agents") if isinstance(raw, dict) else None
            entry = agents[loc[1]] if isinstance(agents, list) and loc[1] < len(agents) else None
            kind = entry.get("agent") if isinstance(entry, dict) else None
            if isinstance(kind, str) and len(kind) <= 40:
                parts[1] = f"{loc[1]} ({kind})"
        where = ".".join(parts)
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
        elif err["type"] == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")  # our messages show the value
            if not where:  # whole-config checks name the key themselves
                lines.append(msg)
            elif len(loc) == 2 and loc[0] == "agents":  # an entry's check names the key
                lines.append(f"{where}.{msg}")
            else:
                lines.append(f"{where}: {msg}")
        else:
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            got = "" if err["type"] == "missing" else f", got {shown}"
            lines.append(f"{where}: {err['msg']}{got}")
    return lines


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a whole experiment YAML; errors name the file and the key.

    The YAML is read strictly (:mod:`campaignrl._yaml`: no duplicate keys, no alias bombs);
    every agent's settings are checked against its config class, learners need a budget, and
    sizes that cannot fit in memory are refused.

    Raises:
        ValueError: ``experiment file 'x.yaml': agents.3 (ppo).learning_rate: must be > 0.0,
            got -1`` and the like.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise ValueError(
                f"experiment file {str(p)!r} has {size:,} bytes, over {_MAX_CONFIG_BYTES:,}"
            )
        raw = strict_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"experiment file {str(p)!r} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"experiment file {str(p)!r} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(
            f"experiment file {str(p)!r} is not valid YAML: {describe_error(exc)}"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"experiment file {str(p)!r} must be a mapping of keys (name, world, agents...), "
            f"got {type(raw).__name__}"
        )
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(
            f"experiment file {str(p)!r}: " + "; ".join(_error_lines(exc, raw))
        ) from None


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    *,
    progress: bool = True,
    overwrite: bool = False,
    runner: Runner | None = None,
) -> pd.DataFrame:
    """Run every agent for every seed; write the results to ``out``; return the summary.

    Writes ``run.json`` first (every path this run may create), then ``config.json``, each
    learner's exported policy under ``policies/<label>/seed<k>`` as it is trained, and at the
    end ``runs.csv`` (one row per agent and seed), ``summary.csv`` (one row per agent: value
    per customer with a 95% interval pooled over seeds, training time...),
    ``learning_curves.csv``, ``values.png``, ``learning_curves.png``, ``report.md`` and, last,
    the completion marker ``DONE.json``. A run that is interrupted removes the results it
    wrote (not its policies) and never leaves ``DONE.json``.

    Args:
        config: The experiment; validated again, whole, before anything is written.
        out: Results folder: new, empty, or (with ``overwrite``) a previous run's.
        progress: Show progress bars.
        overwrite: Remove the previous run's files first, those its ``run.json`` lists (and
            temporary entries its atomic writes left); nothing else is ever deleted.
        runner: Places the runs and yields their :class:`~campaignrl.runs.RunResult` as they
            finish, ``runner(config, progress=...)``: :func:`serial_runs` (default) or
            :func:`campaignrl.scale.ray_runner.ray_runs`. Results do not depend on it.

    Raises:
        FileExistsError: If ``out`` is a file, or is not empty and ``overwrite`` is false, or
            ``overwrite`` is asked of a non-empty folder with no ``run.json``.
        ValueError: If the config is not valid.
    """
    config = ExperimentConfig.model_validate(config.model_dump())
    out_dir = Path(out)
    planned = _planned_paths(config)
    _prepare_out(out_dir, overwrite=overwrite)
    _remove_orphans(out_dir, config)
    manifest = {
        "format": "campaignrl-experiment-run",
        "experiment": config.name,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": planned["files"],
        "folders": planned["folders"],
    }
    write_text_atomic(out_dir / RUN_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    write_text_atomic(out_dir / "config.json", json.dumps(config.model_dump(), indent=2) + "\n")
    stage = Path(tempfile.mkdtemp(prefix=".results.", dir=out_dir))
    try:
        summary = _run_all(config, out_dir, stage, progress=progress, runner=runner or serial_runs)
        for name in RESULT_FILES:  # the results, moved in together, then the marker
            os.replace(stage / name, out_dir / name)
        stage.rmdir()
        done = {
            "complete": True,
            "experiment": config.name,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": planned["files"],
        }
        write_text_atomic(out_dir / DONE, json.dumps(done, indent=2) + "\n")
    except BaseException:
        # Interrupted or failed: nothing may look finished. Policies already saved stay (they
        # are whole, and listed in run.json for --overwrite); results and marker go.
        shutil.rmtree(stage, ignore_errors=True)
        for name in (DONE, *RESULT_FILES):
            (out_dir / name).unlink(missing_ok=True)
        raise
    return summary


def _planned_paths(config: ExperimentConfig) -> dict[str, list[str]]:
    """Every path (relative to ``out``) a run of ``config`` may create.

    ``files``: files and policy directories; ``folders``: the folders holding the policies.
    """
    policies = [
        f"policies/{a.name}/seed{seed}" for a in config.agents if a.learns for seed in config.seeds
    ]
    folders = [f"policies/{a.name}" for a in config.agents if a.learns]
    folders += ["policies"] if folders else []
    files = [RUN_MANIFEST, "config.json", *RESULT_FILES, DONE, *policies]
    return {"files": files, "folders": folders}


def _prepare_out(out_dir: Path, *, overwrite: bool) -> None:
    """Refuse a file or a non-empty folder; with ``overwrite``, remove the previous run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"`out` {str(out_dir)!r} is a file, not a folder")
    if not out_dir.exists():
        out_dir.mkdir(parents=True)
        return
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"`out` {str(out_dir)!r} is not empty; pass --overwrite (overwrite=True) to replace "
            "the previous run's results, or choose a new folder"
        )
    listed = _read_run_manifest(out_dir)
    root = out_dir.resolve()
    for rel in listed["files"]:
        path = out_dir / rel
        if not _inside(root, rel):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir() and all(
            e.name in _POLICY_FILES and e.is_file() and not e.is_symlink() for e in path.iterdir()
        ):
            shutil.rmtree(path)  # a policy directory, as save_policy writes them
    for rel in sorted(listed["folders"], key=len, reverse=True):  # deepest first
        path = out_dir / rel
        if _inside(root, rel) and path.is_dir() and not path.is_symlink():
            _remove_orphan_dirs(path)
            if not any(path.iterdir()):
                path.rmdir()
    remove_orphan_temps(out_dir, ("results",), contents=RESULT_FILES)
    (out_dir / RUN_MANIFEST).unlink(missing_ok=True)


def _remove_orphan_dirs(folder: Path) -> None:
    """Temporary policy directories ``save_policy`` left in ``folder`` when killed."""
    stems = {p.name[1:].rpartition(".")[0] for p in folder.iterdir() if p.name.startswith(".")}
    seeds = [stem for stem in stems if re.fullmatch(r"seed[0-9]+", stem)]
    remove_orphan_temps(folder, seeds, contents=_POLICY_FILES)


def _remove_orphans(out_dir: Path, config: ExperimentConfig) -> None:
    """What a killed run's atomic writes left behind: ``.<name>.XXXXXXXX`` entries."""
    remove_orphan_temps(out_dir, (RUN_MANIFEST, "config.json", DONE, *RESULT_FILES), contents=())
    remove_orphan_temps(out_dir, ("results",), contents=RESULT_FILES)
    for a in config.agents:
        folder = out_dir / "policies" / a.name
        if a.learns and folder.is_dir() and not folder.is_symlink():
            _remove_orphan_dirs(folder)


def _read_run_manifest(out_dir: Path) -> dict[str, list[str]]:
    """The previous run's ``run.json``: the only list ``overwrite`` deletes from."""
    path = out_dir / RUN_MANIFEST
    refuse = FileExistsError(
        f"`out` {str(out_dir)!r} is not empty and holds no campaignrl run manifest "
        f"({RUN_MANIFEST}): --overwrite only removes what a previous run listed there, so "
        "nothing was deleted; choose a new folder or empty this one"
    )
    if not path.is_file() or path.is_symlink():
        raise refuse
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise refuse from None
    if not isinstance(data, dict) or data.get("format") != "campaignrl-experiment-run":
        raise refuse
    out = {}
    for key in ("files", "folders"):
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise refuse
        out[key] = value
    return out


def _inside(root: Path, rel: str) -> bool:
    """Whether ``rel`` is a plain relative path whose folder resolves inside ``root``.

    Refuses absolute paths, ``..`` and ``.`` parts, and folders that are links leading out.
    """
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("", ".", "..") for p in parts):
        return False
    parent = (root / rel).parent.resolve()
    return parent == root or root in parent.parents


def serial_runs(config: ExperimentConfig, *, progress: bool = True) -> Iterator[RunResult]:
    """Every run of ``config`` in this process, one after the other (seeds, then agents).

    The default runner of :func:`run_experiment`; each bar says which agent and seed it is.
    """
    for seed in config.seeds:
        for agent in config.agents:
            with progress_label(f"{agent.name}, seed {seed}"):
                result = run_one(agent, seed, config, progress=progress)
            yield result


def _run_all(
    config: ExperimentConfig,
    out_dir: Path,
    stage: Path,
    *,
    progress: bool,
    runner: Runner,
) -> pd.DataFrame:
    """Place the runs with ``runner``; policies go to ``out`` as they come, results to ``stage``."""
    results = []
    for result in runner(config, progress=progress):
        write_run(result, out_dir)
        results.append(result)
    return write_results(results, config, stage)


def write_results(
    results: Sequence[RunResult], config: ExperimentConfig, folder: Path
) -> pd.DataFrame:
    """Write every file of :data:`RESULT_FILES` for ``results`` into ``folder``; return the summary.

    Pure of the order the runs finished in (:func:`~campaignrl.runs.order_results`).
    """
    runs_table(results, config).to_csv(folder / "runs.csv", index=False)
    summary = summarize(results, config)
    # Wall-clock training time differs between any two runs; it stays in runs.csv and the
    # report so that summary.csv is the same file, to the last digit, for the same config
    # and seeds, serial or on Ray.
    summary.drop(columns=["train_seconds"]).to_csv(folder / "summary.csv", index=False)
    curve_df = curves_table(results, config)
    curve_df.to_csv(folder / "learning_curves.csv", index=False)
    per_period = period_rewards(results, config)
    names = [a.name for a in config.agents]
    by_name = summary.set_index("agent")
    plot_policy_comparison(
        names,
        [float(by_name.loc[n, "value_per_customer"]) for n in names],
        [float(by_name.loc[n, "ci95_low"]) for n in names],
        [float(by_name.loc[n, "ci95_high"]) for n in names],
        [per_period[n] for n in names],
        folder / "values.png",
        f"{config.name}: {config.world}, {config.eval_customers:,} customers x "
        f"{len(config.seeds)} seed(s), {config.horizon} periods",
    )
    plot_learning_curves(
        curve_df,
        folder / "learning_curves.png",
        f"{config.name}: learning curves",
        periods=config.horizon,
    )
    _write_report(config, summary, folder)
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
