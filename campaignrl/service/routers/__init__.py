"""The HTTP routes of the decision service, one ``APIRouter`` per resource.

``decisions`` (decide, batch, activate), ``rewards`` (single, batch), ``policy`` (read, upload,
roll back) and ``ops`` (health, readiness, metrics). Request and response models are built
for the served policy's features and actions (:mod:`~campaignrl.service.routers.models`), so
the OpenAPI schema names every feature; shared needs are dependencies
(:mod:`~campaignrl.service.routers.deps`).
"""

from __future__ import annotations

__all__: list[str] = []
