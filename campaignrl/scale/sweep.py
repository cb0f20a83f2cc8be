"""Hyperparameter sweeps of an experiment's agents on Ray Tune, resumable after a kill.

An experiment YAML with a ``sweep:`` section names, per agent label, a grid of settings
and/or random draws of settings::

    sweep:
      seed: 0                       # seeds the random draws (numpy), not Tune
      agents:
        ucb1:                       # a label from `agents:`
          grid: {epsilon: [0.0, 0.02, 0.05]}
          random: {alpha: {loguniform: [0.1, 10.0]}}
          samples: 4                # random draws, each crossed with the grid: 12 trials

A trial is one setting of one agent: :func:`campaignrl.runs.run_one` for every seed of the
experiment, summarized by :func:`campaignrl.runs.summarize` into one row (value per customer
with its 95% interval pooled over the seeds' evaluation customers), exactly the row an
experiment with that setting would give. The trials are planned here, not by Tune: random
values come from a ``numpy.random.Generator`` seeded by ``sweep.seed`` and Tune runs a
``grid_search`` over trial indices, so the same file always gives the same trials and a
resumed sweep the same table. Tune places the trials (one CPU each, as many at once as the
cluster has CPUs) and retries a trial lost with its worker. As Tune reports a trial
complete, the driver writes its row to ``--out/trials/trial_<index>.json`` (written to a
temporary file and renamed: a kill leaves a whole record or none). Running the same command
again with the same ``--out`` reads those records, checks each one (format, this plan's
hash, the trial's index and settings, finite numbers) and runs a new ``Tuner`` over the
trials without a valid record only; the table is built from the records. Tune's own state
(``--out/tune``, a scratch folder emptied at each start) is never restored, so resuming
unpickles nothing: the records are JSON.

``--out`` receives ``sweep.json`` (the plan, written first), ``trials/`` (one JSON record
per finished trial), ``tune/`` (Tune's logs of the last run, never read back),
``sweep.csv`` (one row per trial, from the records), ``sweep_<agent>.png`` (value with its
interval against each swept setting), ``best/<agent>/`` (``best.json``: the best setting
and its agent entry to paste into an experiment; ``seed<k>/``: its policies, made by
running that setting again, which gives the same policies as the trial since runs are
deterministic) and, last, ``DONE.json``. The best value is the highest of many estimates on
the same evaluation customers, so it is optimistic (the winner's curse): confirm it with an
experiment on other seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from campaignrl._fs import ordinary_mode, write_table_atomic, write_text_atomic
from campaignrl._yaml import describe_error, strict_load
from campaignrl.agents.baselines import baseline_settings
from campaignrl.agents.registry import LEARNERS, config_class
from campaignrl.experiments import AgentSpec, ExperimentConfig, _error_lines

__all__ = [
    "DONE",
    "MAX_TRIALS",
    "METRICS",
    "SWEEP_MANIFEST",
    "TRIALS_DIR",
    "AgentSweep",
    "Distribution",
    "SweepOutcome",
    "SweepSpec",
    "Trial",
    "load_sweep",
    "plan_trials",
    "read_trial_record",
    "run_sweep",
    "sweep_experiment",
    "trial_record",
    "write_trial_record",
]

SWEEP_MANIFEST = "sweep.json"
"""written first: the plan (config, trials, its hash) and every path the sweep may create"""
DONE = "DONE.json"
"""written last, when every trial has finished"""
TRIALS_DIR = "trials"
"""the driver's record of each finished trial: ``trials/trial_<index>.json``"""
MAX_TRIALS = 10_000
"""most trials a sweep may plan (Tune's state and the table stay small)"""
_MAX_CONFIG_BYTES = 1_000_000
_RECORD_FORMAT = "campaignrl-sweep-trial"
_MAX_RECORD_BYTES = 1_000_000
"""a record holds one row and the trial's settings: far less (a bigger file is refused)"""
_INT_METRICS = frozenset({"timesteps", "n_seeds", "eval_customers"})
_SPEC_FIELDS = ("timesteps", "train_customers")
"""settings of the agent's entry rather than of its ``params``: a sweep may vary them too"""
METRICS = (
    "value_per_customer",
    "ci95_low",
    "ci95_high",
    "seed_sd",
    "contact_rate",
    "timesteps",
    "n_seeds",
    "eval_customers",
)
"""what each trial reports (all of it deterministic: no timings, so tables compare exactly)"""
_Number = StrictInt | StrictFloat


class Distribution(BaseModel):
    """How one setting is drawn: exactly one of the keys below.

    ``choices: [a, b, c]`` (uniform over the list), ``uniform: [low, high]``,
    ``loguniform: [low, high]`` (``exp`` of a uniform draw of the logs, ``0 < low``),
    ``integers: [low, high]`` (uniform over ``low..high``, both ends included).
    """

    model_config = ConfigDict(extra="forbid")

    choices: Annotated[list[Any], Field(min_length=1, max_length=MAX_TRIALS)] | None = None
    uniform: tuple[_Number, _Number] | None = None
    loguniform: tuple[_Number, _Number] | None = None
    integers: tuple[StrictInt, StrictInt] | None = None

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("choices", "uniform", "loguniform", "integers") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of choices, uniform, loguniform, integers, got {given or 'none'}"
            )
        kind = given[0]
        if kind == "choices":
            return self
        low, high = getattr(self, kind)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{kind}: bounds must be finite, got [{low}, {high}]")
        if high < low or (high == low and kind != "integers"):
            raise ValueError(f"{kind}: needs low < high, got [{low}, {high}]")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform: needs 0 < low, got [{low}, {high}]")
        return self

    @property
    def kind(self) -> str:
        """Which of ``choices``, ``uniform``, ``loguniform``, ``integers`` this is."""
        return next(k for k in ("choices", "uniform", "loguniform", "integers") if getattr(self, k))

    def draw(self, rng: np.random.Generator) -> Any:
        """One value (plain Python), from ``rng`` only."""
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.uniform is not None:
            return float(rng.uniform(self.uniform[0], self.uniform[1]))
        if self.loguniform is not None:
            low, high = self.loguniform
            return float(np.exp(rng.uniform(np.log(low), np.log(high))))
        low, high = self.integers or (0, 0)  # the one key left (checked when built)
        return int(rng.integers(low, high, endpoint=True))

    def extremes(self) -> list[Any]:
        """Values checked against the agent's rules before drawing: the bounds or choices."""
        if self.choices is not None:
            return list(self.choices)
        return list(getattr(self, self.kind))


class AgentSweep(BaseModel):
    """The settings swept for one agent: a grid, random draws, or both (crossed)."""

    model_config = ConfigDict(extra="forbid")

    grid: dict[StrictStr, Annotated[list[Any], Field(min_length=1, max_length=MAX_TRIALS)]] = Field(
        default_factory=dict, description="setting -> values, every combination tried"
    )
    random: dict[StrictStr, Distribution] = Field(
        default_factory=dict, description="setting -> distribution, drawn `samples` times"
    )
    samples: StrictInt = Field(
        default=1, ge=1, le=MAX_TRIALS, description="random draws, each crossed with the grid"
    )

    @model_validator(mode="after")
    def _settings(self) -> AgentSweep:
        if not self.grid and not self.random:
            raise ValueError("give a grid and/or random settings to sweep")
        both = sorted(set(self.grid) & set(self.random))
        if both:
            raise ValueError(f"random.{both[0]}: also in grid; sweep a setting one way")
        if self.samples > 1 and not self.random:
            raise ValueError(
                f"samples: {self.samples} repeats random draws, and there are none; the "
                "experiment's seeds repeat runs (samples: 1)"
            )
        return self

    def size(self) -> int:
        """Trials this sweeps: grid combinations times samples."""
        return math.prod(len(v) for v in self.grid.values()) * self.samples


class SweepSpec(BaseModel):
    """The ``sweep:`` section of an experiment file."""

    model_config = ConfigDict(extra="forbid")

    seed: StrictInt = Field(default=0, ge=0, le=2**32 - 1, description="seeds the random draws")
    agents: dict[StrictStr, AgentSweep] = Field(
        min_length=1, description="agent label -> what to sweep"
    )

    @model_validator(mode="after")
    def _size(self) -> SweepSpec:
        total = sum(a.size() for a in self.agents.values())
        if total > MAX_TRIALS:
            raise ValueError(f"agents: {total:,} trials planned, over {MAX_TRIALS:,}")
        return self


@dataclasses.dataclass(frozen=True)
class Trial:
    """One planned trial: an agent's entry with the swept settings applied."""

    index: int
    """position in the plan (Tune's ``grid_search`` value, the table's ``trial``)"""
    agent: str
    """the agent's label"""
    settings: dict[str, Any]
    """the swept settings and their values, in the sweep's order"""
    spec: dict[str, Any]
    """the agent's entry (:class:`AgentSpec` fields) with the settings applied"""


def _known_settings(agent: str) -> list[str]:
    """What a sweep of ``agent`` may vary: its config fields (learners) or constructor args."""
    if agent in LEARNERS:
        names = [f.name for f in dataclasses.fields(config_class(agent)) if f.name != "algorithm"]
        return [*_SPEC_FIELDS, *names]
    return list(baseline_settings(agent))


def _check_trial(
    config: ExperimentConfig, world: Any, base: AgentSpec, settings: dict[str, Any]
) -> dict[str, Any] | str:
    """The entry of ``base`` with ``settings`` applied, or the problem (``"field: why"``)."""
    raw = base.model_dump(exclude_none=True)
    raw["params"] = dict(raw.get("params", {}))
    for key, value in settings.items():
        if key in _SPEC_FIELDS:
            raw[key] = value
        else:
            raw["params"][key] = value
    try:
        spec = AgentSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "value_error" or not err["loc"]:
            return msg
        return f"{'.'.join(map(str, err['loc']))}: {err['msg']}, got {err.get('input')!r}"
    problem = spec.size_problem(world, config.horizon)
    if problem is not None:
        return problem
    return spec.model_dump(exclude_none=True)


def plan_trials(config: ExperimentConfig, sweep: SweepSpec) -> list[Trial]:
    """Every trial of ``sweep``, each setting checked by the agent's own rules.

    Agents come in the experiment's order; within one, the random draws (``samples`` of
    them, from ``numpy.random.default_rng([sweep.seed, i])`` for the agent's position
    ``i``, settings drawn in the order written) are crossed with the grid, whose last
    setting varies fastest. The plan depends on the file only.

    Raises:
        ValueError: One line naming the key and the value refused, e.g.
            ``sweep.agents.ucb1.grid.epsilon: must be <= 1.0, got 1.5``.
    """
    labels = [a.name for a in config.agents]
    for label in sweep.agents:
        if label not in labels:
            raise ValueError(
                f"sweep.agents.{label}: no agent labelled {label!r}; agents are {', '.join(labels)}"
            )
    trials: list[Trial] = []
    world = config.spec()  # built once: a plan may check thousands of trials
    for i, base in enumerate(config.agents):
        swept = sweep.agents.get(base.name)
        if swept is None:
            continue
        where = f"sweep.agents.{base.name}"
        known = _known_settings(base.agent)
        for how, names in (("grid", list(swept.grid)), ("random", list(swept.random))):
            for name in names:
                if name not in known:
                    raise ValueError(
                        f"{where}.{how}.{name}: unknown setting for agent {base.agent!r}; "
                        f"settings are {known}"
                    )
        if not base.learns:
            for name in _SPEC_FIELDS:
                if name in swept.grid or name in swept.random:
                    raise ValueError(f"{where}: baselines are not trained; {name} cannot vary")

        # Each value alone first: the error then names the one value that is refused.
        for name, values in swept.grid.items():
            for value in values:
                checked = _check_trial(config, world, base, {name: value})
                if isinstance(checked, str):
                    raise ValueError(_locate(where, swept, checked, {name: value}))
        for name, dist in swept.random.items():
            for value in dist.extremes():
                checked = _check_trial(config, world, base, {name: value})
                if isinstance(checked, str):
                    raise ValueError(
                        f"{where}.random.{name}: {dist.kind} allows {value!r}: "
                        f"{checked.partition(': ')[2] or checked}"
                    )
        rng = np.random.default_rng([sweep.seed, i])
        draws = [
            {name: dist.draw(rng) for name, dist in swept.random.items()}
            for _ in range(swept.samples)
        ]
        combos = [
            dict(zip(swept.grid, c, strict=True)) for c in itertools.product(*swept.grid.values())
        ]
        for drawn in draws:
            for combo in combos:
                settings = {**combo, **drawn}
                checked = _check_trial(config, world, base, settings)
                if isinstance(checked, str):
                    raise ValueError(_locate(where, swept, checked, settings))
                trials.append(Trial(len(trials), base.name, settings, checked))
    return trials


def _locate(where: str, swept: AgentSweep, problem: str, settings: dict[str, Any]) -> str:
    """Where a trial's problem (``"field: why"``) points: the grid, the draws, or the set."""
    field, sep, _ = problem.partition(": ")
    if sep and field in swept.grid:
        return f"{where}.grid.{problem}"
    if sep and field in swept.random:
        return f"{where}.random.{problem} (drawn: {settings})"
    return f"{where}: with {settings}: {problem}"


def _sweep_error_lines(exc: ValidationError) -> list[str]:
    """``sweep.<key>: problem`` per pydantic error of the ``sweep:`` section."""
    lines = []
    for err in exc.errors():
        where = ".".join(["sweep", *(str(x) for x in err["loc"])])
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
        elif err["type"] == "value_error":
            msg = str(err["msg"]).removeprefix("Value error, ")
            field, sep, rest = msg.partition(": ")
            # model checks that name their own key read `key: problem`
            if sep and " " not in field and field.replace(".", "").isidentifier():
                lines.append(f"{where}.{field}: {rest}")
            else:
                lines.append(f"{where}: {msg}")
        else:
            shown = repr(err.get("input"))
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            got = "" if err["type"] == "missing" else f", got {shown}"
            lines.append(f"{where}: {err['msg']}{got}")
    return lines


def load_sweep(path: str | os.PathLike[str]) -> tuple[ExperimentConfig, SweepSpec, list[Trial]]:
    """Read an experiment file with a ``sweep:`` section; validate both and plan the trials.

    The experiment part is validated as :func:`campaignrl.experiments.load_config` does
    (the ``sweep:`` key aside), the sweep against the agents' own rules.

    Raises:
        ValueError: ``experiment file 'x.yaml': sweep.agents.ucb1.grid.epsilon: must be
            <= 1.0, got 1.5`` and the like.
    """
    p = Path(path)
    head = f"experiment file {str(p)!r}"
    try:
        size = p.stat().st_size
        if size > _MAX_CONFIG_BYTES:
            raise ValueError(f"{head} has {size:,} bytes, over {_MAX_CONFIG_BYTES:,}")
        raw = strict_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{head} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"{head} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{head} is not valid YAML: {describe_error(exc)}") from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{head} must be a mapping of keys (name, world, agents, sweep...), got "
            f"{type(raw).__name__}"
        )
    raw = dict(raw)
    if "sweep" not in raw:
        raise ValueError(
            f"{head}: sweep: missing; a sweep needs a `sweep:` section naming the settings "
            "to vary per agent (see experiments/sweep_example.yaml)"
        )
    raw_sweep = raw.pop("sweep")
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{head}: " + "; ".join(_error_lines(exc, raw))) from None
    try:
        sweep = SweepSpec.model_validate(raw_sweep)
    except ValidationError as exc:
        raise ValueError(f"{head}: " + "; ".join(_sweep_error_lines(exc))) from None
    try:
        trials = plan_trials(config, sweep)
    except ValueError as exc:
        raise ValueError(f"{head}: {exc}") from None
    return config, sweep, trials


# ------------------------------------------------------------------------- the driver


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What :func:`sweep_experiment` found: the table, the best trials, what ran now."""

    table: pd.DataFrame
    """``sweep.csv``: one row per trial, in plan order"""
    best: dict[str, int]
    """agent label -> index of its best trial (highest value per customer; first on ties)"""
    ran: tuple[int, ...]
    """trials that ran in this call (the others had a valid record from an earlier one)"""
    failed: dict[int, str]
    """trial index -> the first line of its error (empty when all finished)"""
    out: Path
    """the sweep folder"""
    refused: dict[int, str] = dataclasses.field(default_factory=dict)
    """trial index -> why its earlier record was refused (the trial ran again)"""


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block (Tune reads some when a run starts)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _plan_payload(config: ExperimentConfig, trials: Sequence[Trial]) -> dict[str, Any]:
    experiment = config.model_dump()
    experiment.pop("agents")
    return {"experiment": experiment, "trials": [t.spec for t in trials]}


def _plan_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> str:
    """JSON text that tells ``1``, ``1.0`` and ``true`` apart (``==`` does not)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which is not a finite number")


def _finite(value: Any, integer: bool = False) -> bool:
    """Whether a JSON value is a finite number (an integer if asked); ``bool`` is neither.

    ``json`` reads ``1e999`` as ``inf``, and ``True`` is an ``int`` to Python.
    """
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    return math.isfinite(value)


def trial_record(plan_hash: str, trial: Trial, result: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON record of a finished trial, from the metrics its trainable reported.

    Args:
        plan_hash: The sweep's plan hash (``sweep.json``'s ``plan``).
        trial: The planned trial.
        result: What :func:`~campaignrl.scale.sweep_tune.run_trial` reported (Tune adds
            its own keys: only :data:`METRICS` and ``seed_values`` are kept).
    """
    return {
        "format": _RECORD_FORMAT,
        "plan": plan_hash,
        "trial": trial.index,
        "agent": trial.agent,
        "settings": trial.settings,
        "metrics": {name: _plain(result[name]) for name in METRICS},
        "seed_values": [float(v) for v in result["seed_values"]],
    }


def write_trial_record(out: str | os.PathLike[str], record: dict[str, Any]) -> Path:
    """Write ``record`` to ``out/trials/trial_<index>.json`` atomically (temp file + rename).

    Raises:
        ValueError: If a number is not finite (such a record would be refused on read).
    """
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    return write_text_atomic(Path(out) / TRIALS_DIR / f"trial_{record['trial']}.json", text)


def read_trial_record(
    out: str | os.PathLike[str], plan_hash: str, trial: Trial, n_seeds: int
) -> dict[str, Any] | str | None:
    """The record of ``trial`` under ``out/trials``, checked; why it is refused; or none.

    A record is taken if it is a regular file of at most 1 MB of JSON holding exactly the
    keys :func:`trial_record` writes, this plan's hash, the trial's index, agent and
    settings (compared as JSON text), every metric a finite number (the counts integers,
    ``n_seeds`` seeds, ``ci95_low <= value_per_customer <= ci95_high``) and one finite value
    per seed. These checks catch a damaged, truncated or foreign record, and a record of
    another plan; they cannot tell a record edited to other plausible numbers from a true
    one (nothing but rerunning the trial could).

    Returns:
        The record (a dict); the reason it is refused (a str, which
        :func:`sweep_experiment` reports before running the trial again); or ``None``
        when there is no record.
    """
    path = Path(out) / TRIALS_DIR / f"trial_{trial.index}.json"
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        return "not a regular file"
    try:
        size = path.stat().st_size
        if size > _MAX_RECORD_BYTES:
            return f"{size:,} bytes, over {_MAX_RECORD_BYTES:,}"
        record = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        return f"cannot be read: {exc}"
    except ValueError as exc:  # JSONDecodeError is one
        return f"not valid JSON: {exc}"
    keys = {"format", "plan", "trial", "agent", "settings", "metrics", "seed_values"}
    if not isinstance(record, dict) or set(record) != keys:
        got = sorted(record) if isinstance(record, dict) else type(record).__name__
        return f"not a trial record: keys must be {sorted(keys)}, got {got}"
    if record["format"] != _RECORD_FORMAT:
        return f"format must be {_RECORD_FORMAT!r}, got {record['format']!r}"
    if record["plan"] != plan_hash:
        return "plan: of another plan (its hash differs from sweep.json's)"
    for key, want in (("trial", trial.index), ("agent", trial.agent)):
        if _canonical(record[key]) != _canonical(want):
            return f"{key}: must be {want!r}, got {record[key]!r}"
    if _canonical(record["settings"]) != _canonical(trial.settings):
        return (
            f"settings: must be {_canonical(trial.settings)}, got {_canonical(record['settings'])}"
        )
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or set(metrics) != set(METRICS):
        got = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        return f"metrics: keys must be {sorted(METRICS)}, got {got}"
    for name in METRICS:
        value = metrics[name]
        if not _finite(value, integer=name in _INT_METRICS):
            kind = "an integer" if name in _INT_METRICS else "a finite number"
            return f"metrics.{name}: must be {kind}, got {value!r}"
    if metrics["n_seeds"] != n_seeds:
        return (
            f"metrics.n_seeds: must be {n_seeds} (the experiment's seeds), got {metrics['n_seeds']}"
        )
    if not metrics["ci95_low"] <= metrics["value_per_customer"] <= metrics["ci95_high"]:
        return (
            f"metrics: value_per_customer {metrics['value_per_customer']!r} is outside its "
            f"interval [{metrics['ci95_low']!r}, {metrics['ci95_high']!r}]"
        )
    seeds = record["seed_values"]
    if not isinstance(seeds, list) or len(seeds) != n_seeds or not all(_finite(v) for v in seeds):
        return f"seed_values: must be {n_seeds} finite numbers, got {seeds!r}"
    return record


def _planned_files(config: ExperimentConfig, trials: Sequence[Trial]) -> list[str]:
    labels = list(dict.fromkeys(t.agent for t in trials))
    return [SWEEP_MANIFEST, "sweep.csv", *(f"sweep_{a}.png" for a in labels), DONE]


def _prepare_out(out: Path, plan_hash: str, *, overwrite: bool) -> bool:
    """Make ``out`` ready; return whether it holds this plan's earlier (resumable) sweep.

    Raises:
        FileExistsError: ``out`` is a file; or holds something else than a sweep; or a sweep
            of another plan and ``overwrite`` is false.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"`out` {str(out)!r} is a file, not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return False
    refuse = FileExistsError(
        f"`out` {str(out)!r} is not empty and holds no campaignrl sweep ({SWEEP_MANIFEST}); "
        "choose a new folder or empty this one"
    )
    manifest = out / SWEEP_MANIFEST
    if not manifest.is_file() or manifest.is_symlink():
        raise refuse
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise refuse from None
    listed = previous.get("files") if isinstance(previous, dict) else None
    if (
        not isinstance(previous, dict)
        or previous.get("format") != "campaignrl-sweep"
        or not isinstance(listed, list)
        or not all(isinstance(f, str) for f in listed)
    ):
        raise refuse
    if previous.get("plan") == plan_hash and not overwrite:
        return True
    if not overwrite:
        raise FileExistsError(
            f"`out` {str(out)!r} holds a sweep of another plan (the config or the sweep "
            "changed since it started); pass --overwrite to replace it, or choose a new folder"
        )
    for rel in listed:
        if Path(rel).name == rel and rel not in ("", ".", ".."):
            (out / rel).unlink(missing_ok=True)
    for folder in ("tune", TRIALS_DIR, "best"):  # ours: Tune's scratch, records, bests
        path = out / folder
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
    return False


def sweep_experiment(
    config: ExperimentConfig,
    sweep: SweepSpec,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> SweepOutcome:
    """Run (or resume) a sweep on Ray Tune and write its results to ``out``.

    Ray must be initialized (``ray.init``) or it is started locally for the call (only if
    some trial has to run). A folder holding this very plan's sweep is resumed: the trials
    with a valid record in ``out/trials`` (:func:`read_trial_record`) are kept, and a new
    ``Tuner`` runs the others, its callback recording each as Tune reports it complete.
    Nothing is unpickled: a refused record (damaged, of another plan...) is named on stderr
    and its trial runs again, which rewrites it; trials are deterministic, so that gives
    the true row back rather than leaving the user to delete files by hand.

    Args:
        config: The experiment whose agents are swept (its seeds, world and evaluation).
        sweep: What to sweep.
        out: The sweep folder: new, empty, this plan's earlier sweep (resumed), or with
            ``overwrite`` another sweep's (replaced).
        overwrite: Replace a sweep of another plan (or start this one over).
        progress: Trials done / running / queued on stderr.

    Returns:
        The table, the best trials, what ran now, what failed and which records were refused.

    Raises:
        FileExistsError: See ``out``.
        ValueError: If the sweep does not fit the experiment.
    """
    trials = plan_trials(config, sweep)
    out_dir = Path(out).resolve()
    payload = _plan_payload(config, trials)
    plan_hash = _plan_hash(payload)
    resume = _prepare_out(out_dir, plan_hash, overwrite=overwrite)
    records_dir = out_dir / TRIALS_DIR
    if records_dir.is_symlink() or (records_dir.exists() and not records_dir.is_dir()):
        raise FileExistsError(f"`out` {str(out_dir)!r}: {TRIALS_DIR} is not a folder")
    if not resume:
        manifest = {
            "format": "campaignrl-sweep",
            "experiment": config.name,
            "plan": plan_hash,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "trials": len(trials),
            "files": _planned_files(config, trials),
            "folders": ["tune", TRIALS_DIR, "best"],
            "config": config.model_dump(),
            "sweep": sweep.model_dump(),
            "plan_trials": [dataclasses.asdict(t) for t in trials],
        }
        write_text_atomic(out_dir / SWEEP_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    (out_dir / DONE).unlink(missing_ok=True)

    n_seeds = len(config.seeds)
    refused: dict[int, str] = {}
    todo = []
    for t in trials:
        found = read_trial_record(out_dir, plan_hash, t, n_seeds)
        if isinstance(found, str):
            refused[t.index] = found
            print(
                f"sweep: {records_dir / f'trial_{t.index}.json'}: refused ({found}); "
                f"trial {t.index} runs again",
                file=sys.stderr,
                flush=True,
            )
        if not isinstance(found, dict):
            todo.append(t.index)
    errors = (
        _run_trials(config, trials, todo, payload, plan_hash, out_dir, progress) if todo else {}
    )
    return _write_results(config, sweep, trials, todo, errors, refused, out_dir, plan_hash)


def _run_trials(
    config: ExperimentConfig,
    trials: Sequence[Trial],
    todo: Sequence[int],
    payload: dict[str, Any],
    plan_hash: str,
    out_dir: Path,
    progress: bool,
) -> dict[int, str]:
    """Run the trials ``todo`` with a fresh ``Tuner``; the first line of each one's error."""
    import ray
    from ray import tune

    from campaignrl.scale.sweep_tune import ProgressCallback, RecordCallback, run_trial

    started_ray = False
    if not ray.is_initialized():
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        started_ray = True
    try:
        trainable = tune.with_resources(tune.with_parameters(run_trial, plan=payload), {"cpu": 1})
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Tune's storage is scratch: emptied here, written by Tune, never read back.
        storage = out_dir / "tune"
        if storage.is_symlink():
            storage.unlink()
        elif storage.exists():
            shutil.rmtree(storage)
        labels = {t.index: _describe(t) for t in trials}
        record = RecordCallback(str(out_dir), plan_hash, [dataclasses.asdict(t) for t in trials])
        shown = ProgressCallback(len(trials), labels, progress, done_before=len(trials) - len(todo))
        # the old console output honours verbose=0 (the new one ignores it)
        with _environ(RAY_AIR_NEW_OUTPUT="0"):
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(list(todo))},
                # reuse_actors: a worker keeps campaignrl imported between trials
                tune_config=tune.TuneConfig(max_concurrent_trials=cpus, reuse_actors=True),
                run_config=tune.RunConfig(
                    name="trials",
                    storage_path=str(storage),
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=1),
                    # the record first: a trial shown done is on disk
                    callbacks=[record, shown],
                ),
            )
            grid = tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()
    errors: dict[int, str] = {}
    for k in range(len(grid)):
        result = grid[k]
        if result.error is not None:
            lines = str(result.error).strip().splitlines()
            errors[int((result.config or {})["trial"])] = lines[-1] if lines else "failed"
    return errors


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python one."""
    return value.item() if isinstance(value, np.generic) else value


def _describe(trial: Trial) -> str:
    shown = ", ".join(f"{k}={_cell(v)}" for k, v in trial.settings.items())
    return f"{trial.agent} {shown}"


def _cell(value: Any) -> Any:
    """A setting's value in a table cell: scalars as they are, lists and maps as JSON."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def _write_results(
    config: ExperimentConfig,
    sweep: SweepSpec,
    trials: Sequence[Trial],
    todo: Sequence[int],
    errors: dict[int, str],
    refused: dict[int, str],
    out_dir: Path,
    plan_hash: str,
) -> SweepOutcome:
    """The table (from the trial records), plots and best policies; ``DONE.json`` if all ran."""
    setting_names = list(dict.fromkeys(k for t in trials for k in t.settings))
    kinds = {a.name: a.agent for a in config.agents}
    rows, failed = [], {}
    for t in trials:
        found = read_trial_record(out_dir, plan_hash, t, len(config.seeds))
        metrics: dict[str, Any] = {}
        if isinstance(found, dict):
            metrics = found["metrics"]
        else:  # not run, failed, or (never expected) its new record refused
            failed[t.index] = errors.get(t.index) or found or "did not finish"
        row: dict[str, Any] = {"trial": t.index, "agent": t.agent, "kind": kinds[t.agent]}
        for name in setting_names:
            row[name] = _cell(t.settings[name]) if name in t.settings else None
        for name in METRICS:
            row[name] = metrics.get(name, np.nan)
        rows.append(row)
    ran = tuple(i for i in todo if i not in failed)
    table = pd.DataFrame(rows)
    best: dict[str, int] = {}
    for label, sub in table.groupby("agent", sort=False):
        done = sub.dropna(subset=["value_per_customer"])
        if len(done):  # idxmax takes the first of equal values: the lowest trial index
            best[str(label)] = int(done.loc[done.value_per_customer.idxmax(), "trial"])
    table["best"] = table.trial.isin(list(best.values()))
    write_table_atomic(table, out_dir / "sweep.csv")
    from campaignrl.scale.sweep_plots import plot_sweep

    log_settings = {
        label: [k for k, d in swept.random.items() if d.loguniform is not None]
        for label, swept in sweep.agents.items()
    }
    for label in dict.fromkeys(t.agent for t in trials):
        sub = table[table.agent == label]
        names = [n for n in setting_names if sub[n].notna().any()]
        plot_sweep(
            sub,
            names,
            out_dir / f"sweep_{label}.png",
            f"{config.name}: {label}",
            log_settings=log_settings.get(label, ()),
        )
    if best:
        _export_best(config, trials, table, out_dir)
    if not failed:
        done_info = {
            "complete": True,
            "experiment": config.name,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "trials": len(trials),
            "best": best,
        }
        write_text_atomic(out_dir / DONE, json.dumps(done_info, indent=2) + "\n")
    return SweepOutcome(table, best, ran, failed, out_dir, refused)


def _export_best(
    config: ExperimentConfig, trials: Sequence[Trial], table: pd.DataFrame, out_dir: Path
) -> None:
    """``best/<agent>/``: ``best.json`` and the best trial's policies ``seed<k>/``.

    The trials ship no files (see :func:`~campaignrl.scale.sweep_tune.run_trial`): the best
    setting of every agent is run again for every seed as Ray tasks
    (:func:`~campaignrl.scale.ray_runner.ray_runs`), which gives the very policies the trial
    evaluated (:func:`~campaignrl.runs.run_one` is deterministic). Each folder is built
    beside its place and swapped in whole.
    """
    from campaignrl.scale.ray_runner import ray_runs

    best = [trials[int(i)] for i in table.loc[table.best, "trial"]]
    specs = [AgentSpec.model_validate(t.spec) for t in best]
    rerun = config.model_copy(update={"agents": specs})
    artifacts: dict[tuple[str, int], dict[str, bytes]] = {}
    for result in ray_runs(rerun, progress=False):
        artifacts[(result.agent, result.seed)] = result.artifact
    for trial in best:
        row = table.loc[table.trial == trial.index].iloc[0]
        target = out_dir / "best" / trial.agent
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            os.chmod(tmp, ordinary_mode(directory=True))
            info = {
                "agent": trial.agent,
                "trial": trial.index,
                "settings": trial.settings,
                "spec": trial.spec,
                **{name: _plain(row[name]) for name in METRICS},
            }
            (tmp / "best.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            os.chmod(tmp / "best.json", ordinary_mode())
            for seed in config.seeds:
                files = artifacts[(trial.agent, seed)]
                if not files:  # a baseline: nothing to export
                    continue
                folder = tmp / f"seed{seed}"
                folder.mkdir()
                os.chmod(folder, ordinary_mode(directory=True))
                for name, data in files.items():
                    if Path(name).name != name or name in ("", ".", ".."):
                        raise ValueError(f"policy file names must be plain, got {name!r}")
                    (folder / name).write_bytes(data)
                    os.chmod(folder / name, ordinary_mode())
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


# ---------------------------------------------------------------------------- the CLI


def run_sweep(
    config_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    ray_address: str | None = None,
    overwrite: bool = False,
) -> int:
    """``campaignrl experiment sweep CONFIG --out DIR [--ray ADDRESS] [--overwrite]``.

    Prints the table (best trial per agent marked) and where the results are; returns 0,
    or 1 when some trials failed (run the same command again to retry them).

    Raises:
        ValueError: Bad config or sweep, or Ray not installed or not reachable (the CLI
            prints one line and exits 2).
        FileExistsError: ``argument --out: ...`` (see :func:`sweep_experiment`).
    """
    config, sweep, trials = load_sweep(config_path)
    from campaignrl.scale.ray_runner import INSTALL_HINT

    try:
        import ray
        from ray import tune  # noqa: F401  (Tune ships separately: ray[tune])
    except ImportError:
        raise ValueError(
            f"sweeps run on Ray Tune, which is not installed; {INSTALL_HINT}"
        ) from None
    print(f"{config.name}: {len(trials)} trials x {len(config.seeds)} seed(s)", flush=True)
    started = False
    if not ray.is_initialized():
        address = None if ray_address in (None, "local") else ray_address
        try:
            if address is None:  # trial errors come back through Tune; worker logs are noise
                ray.init(
                    include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
                )
            else:
                ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ValueError(f"argument --ray: cannot connect to {ray_address!r}: {exc}") from None
        started = True
    try:
        outcome = sweep_experiment(config, sweep, out, overwrite=overwrite)
    except FileExistsError as exc:
        raise FileExistsError(f"argument --out: {str(exc).removeprefix('`out` ')}") from None
    finally:
        if started:
            ray.shutdown()
    _print_table(config, outcome)
    if outcome.failed:
        for index, error in outcome.failed.items():
            print(f"trial {index} failed: {error}", file=sys.stderr)
        print(
            f"{len(outcome.failed)} of {len(trials)} trials did not finish (failed or "
            "interrupted); run the same command again to run them (finished trials are kept)",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_table(config: ExperimentConfig, outcome: SweepOutcome) -> None:
    from rich.console import Console
    from rich.table import Table

    table = outcome.table
    fixed = {"trial", "agent", "kind", "best", *METRICS}
    settings = [c for c in table.columns if c not in fixed]
    view = Table(title=f"{config.name}: sweep, seeds {config.seeds} (* best per agent)")
    for col in ("trial", "agent", *settings, "profit / customer", "95% CI", "contact rate"):
        view.add_column(col, justify="left" if col in ("agent", *settings) else "right")
    for r in table.to_dict("records"):
        shown = [("" if pd.isna(r[s]) else str(r[s])) for s in settings]
        value = r["value_per_customer"]
        view.add_row(
            f"{r['trial']}{'*' if r['best'] else ''}",
            str(r["agent"]),
            *shown,
            "failed" if pd.isna(value) else f"{value:.2f}",
            "" if pd.isna(value) else f"[{r['ci95_low']:.2f}, {r['ci95_high']:.2f}]",
            "" if pd.isna(value) else f"{r['contact_rate']:.0%}",
        )
    Console(width=max(Console().width, 100)).print(view)
    reused = len(table) - len(outcome.ran) - len(outcome.failed)
    if reused:
        print(f"resumed: {reused} trial(s) had finished before and were not run again")
    print(
        f"wrote {outcome.out / 'sweep.csv'}, plots sweep_<agent>.png and the best settings' "
        f"policies in {outcome.out / 'best'}"
    )
