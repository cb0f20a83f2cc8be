"""The Ray Tune side of a sweep: the trainable each trial runs and the driver's callbacks.

Imported only when a sweep runs (it imports Ray); :mod:`campaignrl.scale.sweep` plans the
trials and writes the results.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from ray import tune

from campaignrl.experiments import ExperimentConfig
from campaignrl.scale.sweep import METRICS, Trial, trial_record, write_trial_record

__all__ = ["METRICS", "ProgressCallback", "RecordCallback", "plain", "run_trial"]


def plain(value: Any) -> Any:
    """A numpy scalar as a Python one (Tune keeps metrics as JSON)."""
    return value.item() if isinstance(value, np.generic) else value


def run_trial(config: dict[str, Any], plan: dict[str, Any]) -> None:
    """Tune's trainable: one planned trial, :func:`~campaignrl.runs.run_one` for every seed.

    Reports the trial's row of :func:`~campaignrl.runs.summarize` (value per customer pooled
    over the seeds' evaluation customers, its 95% interval...) and the per-seed values, once,
    and no files: Tune then needs no storage shared between the nodes (metrics travel to the
    driver, whose :class:`RecordCallback` writes them), and the driver exports the best
    trials' policies by running them again (:func:`~campaignrl.runs.run_one` is
    deterministic).

    Args:
        config: Tune's trial config: ``{"trial": index}``.
        plan: ``experiment`` (the config without its agents) and ``trials`` (each trial's
            agent entry).
    """
    from campaignrl.runs import run_one, summarize

    index = int(config["trial"])
    entry = plan["trials"][index]
    experiment = ExperimentConfig.model_validate({**plan["experiment"], "agents": [entry]})
    agent = experiment.agents[0]
    results = [run_one(agent, seed, experiment) for seed in experiment.seeds]
    row = summarize(results, experiment).iloc[0]
    metrics: dict[str, Any] = {name: plain(row[name]) for name in METRICS}
    metrics.update(trial=index, seed_values=[float(r.value_per_customer) for r in results])
    tune.report(metrics)


class RecordCallback(tune.Callback):
    """On the driver, each trial Tune reports complete is written to ``trials/trial_<i>.json``.

    The record (:func:`~campaignrl.scale.sweep.trial_record`, written atomically) is what a
    rerun of the sweep resumes from, so Tune's own state, which it pickles, is never
    restored. Holds only plain data (Tune pickles its run config into its scratch folder).
    """

    def __init__(self, out: str, plan_hash: str, trials: list[dict[str, Any]]) -> None:
        self.out, self.plan_hash, self.trials = out, plan_hash, trials

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Record the trial's one report (a trial that reported nothing left no row)."""
        result = trial.last_result or {}
        if not all(name in result for name in (*METRICS, "seed_values")):
            return
        planned = Trial(**self.trials[int(trial.config["trial"])])
        write_trial_record(self.out, trial_record(self.plan_hash, planned, result))


class ProgressCallback(tune.Callback):
    """Trials done / running / queued on stderr: a bar on a terminal, else a line per trial.

    Tune pickles its run config (callbacks included), so this keeps only plain settings; the
    bar is made in :meth:`setup`.
    """

    def __init__(
        self, total: int, labels: dict[int, str], enabled: bool = True, done_before: int = 0
    ) -> None:
        self.total, self.labels, self.enabled = total, labels, enabled
        self.done_before = done_before
        self._bar: Any = None
        self._task: Any = None
        self._done: set[int] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "labels": self.labels,
            "enabled": self.enabled,
            "done_before": self.done_before,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.total, self.labels, self.enabled = state["total"], state["labels"], state["enabled"]
        self.done_before = state["done_before"]
        self._bar = self._task = None
        self._done = set()

    def _counts(self, trials: Sequence[Any]) -> tuple[int, int, int]:
        # Tune creates trials as slots free up and marks one finished only after its
        # callbacks ran: count against the plan's total and this callback's own record
        # (trials recorded by an earlier run are done_before; this Tuner never sees them).
        finished = {int(t.config["trial"]) for t in trials if t.status in ("TERMINATED", "ERROR")}
        done = self.done_before + len(finished | self._done)
        running = sum(
            t.status == "RUNNING" and int(t.config["trial"]) not in self._done for t in trials
        )
        return done, running, self.total - done - running

    def setup(self, *args: Any, **info: Any) -> None:
        """Open the bar on a terminal."""
        from rich.console import Console
        from rich.progress import Progress

        console = Console(stderr=True)
        if self.enabled and console.is_terminal:
            self._bar = Progress(console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("sweep", total=self.total, completed=self.done_before)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Redraw the bar."""
        if self._bar is None:
            return
        done, running, queued = self._counts(trials)
        self._bar.update(
            self._task,
            completed=done,
            description=f"sweep: {done} done, {running} running, {queued} queued",
        )

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Without a bar, one line per finished trial."""
        if not self.enabled or self._bar is not None:
            return
        index = int(trial.config["trial"])
        self._done.add(index)
        done, running, queued = self._counts(trials)
        result = trial.last_result or {}
        shown = ""
        if isinstance(result.get("value_per_customer"), float):
            shown = (
                f": {result['value_per_customer']:.2f} "
                f"[{result['ci95_low']:.2f}, {result['ci95_high']:.2f}]"
            )
        print(
            f"sweep: trial {index} ({self.labels.get(index, '?')}) done{shown}; "
            f"{done} of {self.total} done, {running} running, {queued} queued",
            file=sys.stderr,
            flush=True,
        )

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
