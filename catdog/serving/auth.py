"""Who may call catdog serve: a bearer token (CATDOG_SERVE_TOKEN) beyond loopback, checked as a FastAPI dependency."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import HTTPException, Request

from catdog.core.errors import CatdogError

TOKEN_VARIABLE = "CATDOG_SERVE_TOKEN"
PAGES = {"/", "/label"}  # a browser opening a page may pass the token as ?token=...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Only loopback may be served without a token: anything else reaches other machines."""
    if not is_loopback(host) and not token:
        raise CatdogError(
            f"binding to {host} makes the model reachable from other machines; set "
            f"{TOKEN_VARIABLE} to a secret (clients send 'Authorization: Bearer <token>'), "
            "or bind to 127.0.0.1"
        )


def token_name(request, tokens: dict[str, str]) -> str | None:
    """The name of the token the request offers, or None when it offers no right one."""
    offered = request.headers.get("authorization", "")
    offered = offered[7:] if offered.lower().startswith("bearer ") else ""
    if not offered and request.url.path in PAGES:  # a browser opening a page: /?token=...
        offered = request.query_params.get("token", "")
    matches = [name for secret, name in tokens.items() if hmac.compare_digest(offered.encode(), secret.encode())]
    return matches[0] if matches else None


def parse_tokens(token: str | None) -> dict[str, str]:
    """secret -> the name a label record gives as who, from CATDOG_SERVE_TOKEN: one secret, or
    name=secret,name=secret."""
    if not token:
        return {}
    pairs = [item.partition("=") for item in token.split(",") if item.strip()]
    if not all(sep and name.strip() and secret.strip() for name, sep, secret in pairs):  # e.g. a base64 secret
        return {token: "token"}
    return {secret.strip(): name.strip() for name, _, secret in pairs}


class TokenAuth:
    """A FastAPI dependency: who calls (the token's name, or "local" on a server without tokens);
    401 for a request without a right token. Routers that need it declare it; probes do not."""

    def __init__(self, token: str | None):
        self.tokens = parse_tokens(token)

    def __call__(self, request: Request) -> str:
        who = token_name(request, self.tokens) if self.tokens else "local"
        if who is None:
            raise HTTPException(
                401, f"missing or wrong token: send 'Authorization: Bearer <token>' (the server's {TOKEN_VARIABLE})"
            )
        request.state.who = who
        return who
