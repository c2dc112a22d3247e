"""What a server is given: ServeSetup, read once from params.yaml and the project's folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catdog.core.config import MonitorParams, ServeParams
from catdog.monitoring.labelling import LabelSetup
from catdog.registry.store import Registry


@dataclass(frozen=True)
class ServeSetup:
    """What one server needs, read once from params.yaml and the project's folders."""

    registry: Registry
    params: ServeParams
    monitor: MonitorParams
    max_pixels: int  # validate.max_pixels: the same guard as the pipeline's
    serving_dir: Path  # the prediction log and kept inputs (data/serving)
    labels: LabelSetup | None = None  # the labelling queue (GET /label)
    token: str | None = None  # CATDOG_SERVE_TOKEN: a secret, or name=secret,name=secret (labels say who)

    @property
    def body_limit(self) -> int:
        return self.params.max_files * self.params.max_upload_bytes + 2**16  # the multipart framing around the files
