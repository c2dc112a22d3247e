"""What one server builds from its ServeSetup (catdog.serving.app.build_parts), shared by its routers."""

from __future__ import annotations

from dataclasses import dataclass

from catdog.serving.admission import Admission
from catdog.serving.answering import Answering
from catdog.serving.auth import TokenAuth
from catdog.serving.batching import Batcher
from catdog.serving.metrics import Metrics
from catdog.serving.model_holder import ModelHolder


@dataclass(frozen=True)
class Parts:
    """One server's working parts."""

    metrics: Metrics
    admission: Admission
    holder: ModelHolder
    batcher: Batcher
    answering: Answering
    auth: TokenAuth
