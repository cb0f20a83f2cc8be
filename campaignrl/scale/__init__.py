"""Scale-out on Ray (the optional extra ``campaignrl[ray]``).

Nothing here imports Ray at import time: the modules import it when a runner starts.
:mod:`campaignrl.scale.ray_runner` places experiment runs as Ray tasks.
"""

from __future__ import annotations

__all__: list[str] = []
