"""Experiments on Ray: every (agent, seed) run as a Ray task; results come back as data.

The work of a task is :func:`campaignrl.runs.run_one`, the same function the serial runner
calls: it trains, exports and evaluates, and returns a :class:`~campaignrl.runs.RunResult`
whose policy files travel as bytes. Ray only places the tasks (one CPU each) and brings the
results back; the driver writes every file (:func:`campaignrl.runs.write_run` and the
experiment's tables), so ``--out`` only needs to exist where the command runs. The summary
does not depend on where or in which order the runs ran (:func:`campaignrl.runs.summarize`
pools them in the experiment's order), so it equals the serial run's to the last digit.

A task whose worker or node dies is a system failure: Ray runs it again, up to
``max_retries`` times, on whatever node is left. A Python error raised by ``run_one`` is
not retried (``retry_exceptions=False``): it is a bug or bad input that would fail again
the same way, so it stops the experiment at once with its message.

Ray is imported only when a runner starts, so ``campaignrl`` works without it; install it
with ``pip install "campaignrl[ray]"``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from campaignrl.runs import RunResult, run_one

if TYPE_CHECKING:
    from campaignrl.experiments import AgentSpec, ExperimentConfig

__all__ = [
    "INSTALL_HINT",
    "MAX_RETRIES",
    "RunLostError",
    "RayUnavailableError",
    "ray_runner",
    "ray_runs",
    "require_ray",
]

INSTALL_HINT = 'pip install "campaignrl[ray]"'
"""what to run when Ray is missing"""
MAX_RETRIES = 3
"""times a run lost with its worker or node is run again before the experiment fails"""
_POLL_SECONDS = 0.5
"""how often the progress line is refreshed while waiting for runs"""
_PPO_COST = 20.0
"""a PPO customer-step costs about this many bandit customer-steps (measured on retail):
used only to start the longest runs first"""


class RunLostError(RuntimeError):
    """A run was lost with its worker or node more times than it may be retried."""


class RayUnavailableError(ValueError):
    """Ray is not installed (a ``ValueError``: the CLI prints it as one line, exit 2)."""


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it.

    Raises:
        RayUnavailableError: If Ray cannot be imported.
    """
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"argument --ray: Ray is not installed; {INSTALL_HINT}") from None
    return ray


def _run_task(agent: AgentSpec, seed: int, config: ExperimentConfig) -> RunResult:
    """The body of a Ray task: :func:`run_one` without progress bars (they are the driver's)."""
    return run_one(agent, seed, config, progress=False)


def _cost(agent: AgentSpec, config: ExperimentConfig) -> float:
    """A rough cost of a run, to submit the longest first (the makespan is then shortest)."""
    budget = config.budget(agent)
    train = 0.0 if budget is None else float(budget.timesteps)
    if agent.agent == "ppo":
        train *= _PPO_COST
    return train + float(config.eval_customers * config.horizon)


def _connect(ray: Any, address: str) -> bool:
    """Join or start Ray; return whether this call started it (and must shut it down).

    ``local`` starts a Ray instance on this machine with all its CPUs; ``auto`` joins the
    cluster started on this machine by ``ray start --head``; anything else is a cluster
    address (``HOST:6379``, or ``ray://HOST:10001`` through Ray Client). A Ray already
    initialized in this process (tests, notebooks) is used as it is.
    """
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def ray_runs(
    config: ExperimentConfig,
    *,
    progress: bool = True,
    address: str = "local",
    max_retries: int = MAX_RETRIES,
) -> Iterator[RunResult]:
    """Run every (agent, seed) of ``config`` as a Ray task; yield results as they finish.

    Each task declares one CPU (``num_cpus=1``; the runs are single-threaded: BLAS and
    torch are held to one thread), so Ray runs as many at once as the cluster has CPUs. The
    longest runs are submitted first. A run lost with its worker or node is retried up to
    ``max_retries`` times; an error inside a run cancels the others and is raised.
    Progress (on a terminal) says how many runs are done, running and queued; running is
    counted as the unfinished runs the cluster's CPUs can hold.

    Args:
        config: The experiment.
        progress: Show the progress line on stderr.
        address: ``local``, ``auto`` or a cluster address (see :func:`_connect`).
        max_retries: Retries of a run lost with its worker or node.

    Yields:
        Each run's :class:`~campaignrl.runs.RunResult`, in the order they finish.

    Raises:
        RayUnavailableError: If Ray is not installed.
    """
    ray = require_ray()
    started_here = _connect(ray, address)
    pending: dict[Any, tuple[str, int]] = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_run_task)
        config_ref = ray.put(config)  # shipped once, shared by every task
        order = sorted(
            ((a, s) for s in config.seeds for a in config.agents),
            key=lambda run: -_cost(run[0], config),
        )
        for agent, seed in order:
            pending[task.remote(agent, seed, config_ref)] = (agent.name, seed)
        total = len(pending)
        with _RunsProgress(total, enabled=progress) as show:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
                for ref in done:
                    name, seed = pending.pop(ref)
                    yield _result(ray, ref, name, seed, max_retries)
                cpus = int(ray.cluster_resources().get("CPU", 0))
                running = min(len(pending), cpus)
                show(total - len(pending), running, len(pending) - running)
    finally:
        for ref in pending:  # stopped early (an error, Ctrl-C): free the cluster
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _result(ray: Any, ref: Any, name: str, seed: int, max_retries: int) -> RunResult:
    """The run's result; an error raised inside it as itself, a lost run as RunLostError."""
    try:
        result: RunResult = ray.get(ref)
    except ray.exceptions.RayTaskError:
        raise  # the run's own error (a subclass of it too): its message says what went wrong
    except ray.exceptions.RayError as exc:
        raise RunLostError(
            f"run ({name!r}, seed {seed}) was lost {max_retries + 1} times with its worker "
            f"or node ({type(exc).__name__}); is the Ray cluster healthy?"
        ) from exc
    return result


def ray_runner(address: str = "local", *, max_retries: int = MAX_RETRIES) -> Any:
    """A :class:`~campaignrl.experiments.Runner` for ``run_experiment(..., runner=...)``."""

    def runner(config: ExperimentConfig, *, progress: bool) -> Iterator[RunResult]:
        return ray_runs(config, progress=progress, address=address, max_retries=max_retries)

    return runner


class _RunsProgress:
    """A rich bar of runs on stderr: ``runs: 3 done, 2 running, 7 queued`` (terminals only)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        from rich.console import Console

        self.total = total
        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.started = time.perf_counter()

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda done, running, queued: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task(self._text(0, 0, self.total), total=self.total)

        def show(done: int, running: int, queued: int) -> None:
            self.bar.update(
                self.task, completed=done, description=self._text(done, running, queued)
            )

        return show

    @staticmethod
    def _text(done: int, running: int, queued: int) -> str:
        return f"runs on Ray: {done} done, {running} running, {queued} queued"

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(None, None, None)
