"""Back-pressure for `catdog serve`: a request is admitted only while the server's budgets allow.

Two budgets bound the memory a flood can take: the request bytes admitted at once
(`serve.max_inflight_bytes`, reserved from Content-Length before a byte of the body is read, the
whole allowed body for a chunked upload) and the converted images waiting for the model
(`serve.max_queued_images`). Over either, the request is answered 503 at once with a
Retry-After (the seconds the model needs for the images ahead of it), its body left unread;
requests under the budgets go on being answered.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator


class Overloaded(Exception):
    def __init__(self, reason: str, retry_after: int):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class Admission:
    """Budgets of one server, used from its event loop only (so plain counters suffice)."""

    def __init__(self, max_bytes: int, max_images: int):
        self.max_bytes, self.max_images = max_bytes, max_images
        self.bytes_in_flight = 0
        self.images_waiting = 0
        self.images_per_second = 10.0  # until measured: a moving average of the model's speed

    def retry_after(self) -> int:
        """Seconds until the images ahead are likely answered: 1 to 60."""
        return max(1, min(60, math.ceil(self.images_waiting / max(self.images_per_second, 0.1))))

    @contextlib.contextmanager
    def request_bytes(self, nbytes: int) -> Iterator[None]:
        if self.images_waiting >= self.max_images:
            raise Overloaded(
                f"server busy: {self.images_waiting} images are waiting for the model "
                f"(serve.max_queued_images {self.max_images}); retry after the seconds "
                "in Retry-After",
                self.retry_after(),
            )
        if self.bytes_in_flight + nbytes > self.max_bytes:
            raise Overloaded(
                f"server busy: {self.bytes_in_flight:,} request bytes are being read and "
                f"answered, and {nbytes:,} more would pass serve.max_inflight_bytes "
                f"({self.max_bytes:,}); retry after the seconds in Retry-After",
                self.retry_after(),
            )
        self.bytes_in_flight += nbytes
        try:
            yield
        finally:
            self.bytes_in_flight -= nbytes

    @contextlib.contextmanager
    def queued_images(self, count: int) -> Iterator[None]:
        if self.images_waiting + count > self.max_images:
            raise Overloaded(
                f"server busy: {self.images_waiting} images are waiting for the model and "
                f"{count} more would pass serve.max_queued_images ({self.max_images}); retry "
                "after the seconds in Retry-After",
                self.retry_after(),
            )
        self.images_waiting += count
        try:
            yield
        finally:
            self.images_waiting -= count

    def answered(self, images: int, seconds: float) -> None:
        """A model call answered `images` in `seconds`: update the speed estimate."""
        if images and seconds > 0:
            self.images_per_second = 0.8 * self.images_per_second + 0.2 * images / seconds


class BodyTooLarge(Exception):
    """A request body went past its limit while it was read."""


def limited(receive, limit: int):
    """An ASGI receive that stops reading a request body once it passes `limit` bytes."""
    received = 0

    async def limited_receive():
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge
        return message

    return limited_receive
