"""A subscription to one room's log (or the user's feed) that keeps Hark's delivery
guarantee whatever the connection does: each event is handed out once, in seq order.
Repeats after a resume are dropped by seq; an event that arrives after a missing one
waits while the missing ones are read from the REST event log; a `reset` (the client
was further behind than the server replays) awaits the application's hook before the
events after it. The TypeScript SDK's `room.ts` keeps the same rules."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import HarkError

log = logging.getLogger("hark")

Event = dict[str, Any]


class RoomHost(Protocol):
    async def read_events(self, room_id: str, after: int) -> list[Event]: ...

    def release(self, room: "Room") -> None: ...


@dataclass
class RoomStats:
    delivered: int = 0
    #: Events dropped because their seq was already delivered (repeats after a resume).
    repeats: int = 0
    #: Events read from the REST log to fill a gap.
    filled: int = 0
    resets: int = 0


_END = object()


class Room:
    """Iterate it (`async for event in room`) to receive the room's events. Frames
    that are not in the log (`typing`, `read`, `presence`) go to `on_frame`."""

    def __init__(
        self,
        room_id: str,
        host: RoomHost,
        *,
        since: int | None = None,
        on_reset: Callable[[int], Awaitable[None] | None] | None = None,
        on_frame: Callable[[dict], None] | None = None,
    ):
        self.room_id = room_id
        self.stats = RoomStats()
        #: Members online in the room, from `presence` frames, by user id.
        self.online: dict[str, dict] = {}
        self._host = host
        #: The newest seq handed out; None until the server said where live events start.
        self._last = since
        #: Events that arrived ahead of a missing one (or before the start was known).
        self._ahead: dict[int, Event] = {}
        #: A reset hook or a gap read in progress: delivery waits for it.
        self._blocked = False
        self._on_reset = on_reset
        self._on_frame = on_frame
        self._queue: asyncio.Queue = asyncio.Queue()
        self._ended: HarkError | None = None
        self._closed = False

    @property
    def last_seq(self) -> int | None:
        """The newest seq handed out, to resume from."""
        return self._last

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stops receiving the room; an iteration in progress ends."""
        if self._closed:
            return
        self._finish()
        self._host.release(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            event = await self._queue.get()
            if event is _END:
                if self._ended is not None:
                    raise self._ended
                return
            yield event

    def acknowledged(self, seq: int) -> None:
        """The server acknowledged the subscription; `seq` is the room's newest then."""
        if self._last is None:
            self._last = seq
        self._drain()

    def receive(self, event: Event) -> None:
        """An event from the connection, in whatever order and as often as it came."""
        if self._closed:
            return
        if self._last is not None and event["seq"] <= self._last:
            self.stats.repeats += 1
            return
        self._ahead[event["seq"]] = event
        self._drain()

    def reset(self, seq: int) -> None:
        """The server skipped everything up to `seq`: the application reloads history."""
        if self._closed or (self._last is not None and seq <= self._last):
            return
        self.stats.resets += 1
        self._last = seq
        self._ahead = {held: event for held, event in self._ahead.items() if held > seq}
        if self._on_reset is None:
            self._drain()
            return
        self._blocked = True
        asyncio.get_running_loop().create_task(self._run_reset_hook(seq))

    def frame(self, frame: dict) -> None:
        """A frame that is not in the log."""
        if frame["op"] == "presence":
            if frame["status"] == "online":
                self.online[frame["user"]["id"]] = frame["user"]
            else:
                self.online.pop(frame["user"]["id"], None)
        if self._on_frame is not None:
            try:
                self._on_frame(frame)
            except Exception:
                log.exception("on_frame failed")

    def end(self, error: HarkError) -> None:
        """The server ended the subscription (the user left, or the room is not theirs)."""
        if self._closed:
            return
        self._ended = error
        self._finish()
        self._host.release(self)

    async def _run_reset_hook(self, seq: int) -> None:
        try:
            result = self._on_reset(seq)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("on_reset failed")
        finally:
            self._blocked = False
            self._drain()

    def _drain(self) -> None:
        if self._blocked or self._last is None:
            return
        while (event := self._ahead.pop(self._last + 1, None)) is not None:
            self._deliver(event)
            if self._blocked or self._closed:
                return
        # What a gap read delivered may also have arrived from the connection meanwhile.
        self._ahead = {held: event for held, event in self._ahead.items() if held > self._last}
        if self._ahead:
            self._blocked = True
            asyncio.get_running_loop().create_task(self._fill_gap(min(self._ahead) - 1))

    async def _fill_gap(self, up_to: int) -> None:
        failures = 0
        while not self._closed and self._last < up_to:
            try:
                events = await self._host.read_events(self.room_id, self._last)
            except Exception as error:
                if not (isinstance(error, HarkError) and error.code == "log_trimmed"):
                    log.exception("reading the event log to fill a gap failed")
                    await asyncio.sleep(min(10.0, 0.25 * 2**failures))
                    failures += 1
                    continue
                events = []
            missing = [event for event in events if self._last < event["seq"] <= up_to]
            if not missing or missing[0]["seq"] != self._last + 1:
                # The log no longer holds them (retention trimmed it): as beyond the
                # server's replay window, the application reloads.
                self._blocked = False
                self.reset(up_to)
                return
            for event in missing:
                if event["seq"] != self._last + 1:
                    break
                self.stats.filled += 1
                self._deliver(event)
        self._blocked = False
        self._drain()

    def _deliver(self, event: Event) -> None:
        self._last = event["seq"]
        self.stats.delivered += 1
        self._queue.put_nowait(event)

    def _finish(self) -> None:
        self._closed = True
        self._ahead.clear()
        self._queue.put_nowait(_END)
