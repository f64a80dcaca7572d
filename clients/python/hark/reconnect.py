"""What the connection does when its socket closes, by close code (the table in
`openapi/websocket.md`), and when it re-authenticates before its token expires. The
TypeScript SDK decides the same way (`clients/typescript/src/reconnect.ts`)."""

import base64
import json
import random
import time
from dataclasses import dataclass

from .errors import HarkError


@dataclass(frozen=True)
class Backoff:
    """How reconnecting waits, in seconds."""

    initial: float = 0.25
    maximum: float = 10.0
    rate_limited: float = 5.0


@dataclass(frozen=True)
class Retry:
    delay: float
    #: Why the next token is asked for: `connect` or `rejected` (a new one is needed).
    token: str
    counts_as_failure: bool


def after_close(code: int, failures: int, backoff: Backoff = Backoff()) -> Retry | HarkError:
    """Decides what follows a close with `code` after `failures` failed attempts in a
    row: a `Retry`, or the error to stop with. Delays are jittered so that the clients
    of a restarted instance do not all come back at the same moment."""
    ceiling = min(backoff.maximum, backoff.initial * 2**failures)
    jittered = ceiling / 2 + random.random() * ceiling / 2
    if code == 1012:
        return Retry(random.random() * 0.25, "connect", False)
    if code == 4009:
        return Retry(random.random() * 0.1, "connect", False)
    if code == 4001:
        return Retry(0 if failures == 0 else jittered, "rejected", True)
    if code == 4008:
        return Retry(max(backoff.rate_limited, jittered), "connect", True)
    if code == 4003:
        return HarkError("forbidden", "The server refused this connection (4003)")
    if code == 4400:
        return HarkError("invalid_frame", "The server closed the connection for malformed frames (4400)")
    return Retry(jittered, "connect", True)


def claims(token: str) -> dict:
    """The claims of an access token (not verified: the server does that)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refresh_delay(token: str, now: float | None = None) -> float | None:
    """Seconds until the connection should re-authenticate: a fifth of the token's
    remaining life before it ends, at most a minute before."""
    try:
        expiry = float(claims(token)["exp"])
    except (ValueError, KeyError, IndexError):
        return None
    remaining = expiry - (time.time() if now is None else now)
    return max(0.0, remaining - min(60.0, remaining / 5))
