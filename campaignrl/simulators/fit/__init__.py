"""Fitting a customer simulator from decision logs (issue #12).

``fit_simulator(logs, ...)`` estimates the segment model, the recommendation model, the
response models and the dynamics of :mod:`campaignrl.simulators.core` from a decision log and
returns a :class:`FittedSimulator` whose ``spec`` is an ordinary
:class:`~campaignrl.simulators.WorldSpec`; ``save_fitted`` writes it as a SIMDIR
(``manifest.json`` + ``arrays.npz``) that :func:`campaignrl.simulators.load_world` reads
wherever a preset name is accepted.
"""

from __future__ import annotations

from campaignrl.simulators.fit.artifact import (
    SimulatorArtifactError,
    is_simulator_dir,
    load_fitted,
    read_world,
    save_fitted,
)
from campaignrl.simulators.fit.fitting import FittedSimulator, fit_simulator

__all__ = [
    "FittedSimulator",
    "SimulatorArtifactError",
    "fit_simulator",
    "is_simulator_dir",
    "load_fitted",
    "read_world",
    "save_fitted",
]
