"""The one error type of the SDK: a refusal of the server (with its stable code) or a
failure of the connection."""

CONNECTION_LOST = "connection_lost"
TIMEOUT = "timeout"
CLOSED = "closed"

_TRANSIENT_CODES = {CONNECTION_LOST, TIMEOUT, "rate_limited", "conflict_retry", "unavailable"}


class HarkError(Exception):
    """An error with the server's stable `code` (see the REST API's errors) or one of
    the SDK's: `connection_lost`, `timeout`, `closed`."""

    def __init__(self, code: str, message: str, *, field: str | None = None, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field
        self.status = status

    @property
    def transient(self) -> bool:
        """Whether trying again later, unchanged, may succeed (never for input or
        permission errors)."""
        if self.code in _TRANSIENT_CODES:
            return True
        return self.status is not None and (self.status >= 500 or self.status in (408, 429))
