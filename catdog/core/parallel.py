"""An ordered map over worker processes for the CPU-bound image stages (validate, preprocess)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator


def _start_method() -> str:
    # fork starts workers in milliseconds (spawn takes ~0.5 s to re-import), but it is only
    # safe in a process with no other threads; TensorFlow's thread pools rule it out.
    if hasattr(os, "fork") and threading.active_count() == 1 and "tensorflow" not in sys.modules:
        return "fork"
    return "spawn"


@contextlib.contextmanager
def process_map(func: Callable, workers: int, chunksize: int = 16) -> Iterator[Callable[[Iterable], Iterator]]:
    """`with process_map(f, 2) as mapper: for result in mapper(items): ...` — results in input order.

    Start it before any progress bar (tqdm may start a monitor thread). One worker runs inline.
    """
    workers = max(1, min(workers, os.cpu_count() or 1))
    if workers == 1:
        yield lambda items: map(func, items)
        return
    with multiprocessing.get_context(_start_method()).Pool(workers) as pool:
        yield lambda items: pool.imap(func, items, chunksize=chunksize)
