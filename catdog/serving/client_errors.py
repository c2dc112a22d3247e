"""What a client is told when a request cannot be answered: the reason in its terms, never the
server's file paths. The whole message goes to the server's log."""

from __future__ import annotations

import logging
import re

log = logging.getLogger("catdog.serve")

# An absolute path of two or more parts: /srv/catdog/data/registry, /tmp/x/model.keras
_SERVER_PATH = re.compile(r"(?<![\w:/])/(?:[\w.@+-]+/)+[\w.@+-]*")


def public(message: str) -> str:
    """The message with every absolute path of this machine replaced by its last part."""

    def last_part(match: re.Match) -> str:
        parts = [part for part in match.group(0).split("/") if part]
        return f"<{parts[-1]}>" if parts else "<path>"

    told = _SERVER_PATH.sub(last_part, message)
    if told != message:
        log.info("serve: told a client %r (in full: %r)", told, message)
    return told
