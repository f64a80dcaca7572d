"""The client: one WebSocket per user session that authenticates with its first
frame, re-authenticates on the open socket before the token expires, reconnects with
jittered backoff as the close code says, and resubscribes every room from the last
seq it delivered. The rooms keep the order (room.py); this module keeps the
connection. Liveness is the `websockets` keepalive (a ping every 20 s)."""

import asyncio
import itertools
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as open_websocket
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .errors import CONNECTION_LOST, TIMEOUT, HarkError
from .reconnect import Backoff, Retry, after_close, claims, refresh_delay
from .room import Event, Room

log = logging.getLogger("hark")

#: Answers an access token of the user; called with `connect`, `expiring` (answer a
#: fresh one) or `rejected` (the server refused the last one). Calls never overlap.
GetToken = Callable[[str], Awaitable[str] | str]


def connect(url: str, get_token: GetToken, **options: Any) -> "Client":
    """A client for the server at `url` (`https://chat.example.com`); use it as
    `async with hark.connect(url, get_token) as client:`."""
    return Client(url, get_token, **options)


class Client:
    def __init__(
        self,
        url: str,
        get_token: GetToken,
        *,
        backoff: Backoff = Backoff(),
        ack_timeout: float = 10.0,
    ):
        self.url = url.rstrip("/")
        self.state = "connecting"
        self._get_token = get_token
        self._backoff = backoff
        self._ack_timeout = ack_timeout
        self._rooms: dict[str, Room] = {}
        self._pending: dict[str, asyncio.Future] = {}
        self._refs = itertools.count(1)
        self._socket: ClientConnection | None = None
        self._token: str | None = None
        self._token_call: asyncio.Task | None = None
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._stopped = False
        self._error: HarkError | None = None
        self._http = httpx.AsyncClient(base_url=self.url, timeout=30.0)

    async def __aenter__(self) -> "Client":
        await self.ready()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def user_id(self) -> str:
        """The signed-in user's id (the token's subject)."""
        if self._token is None:
            raise HarkError("not_connected", "No token yet: await client.ready() first")
        return claims(self._token)["sub"]

    async def ready(self) -> None:
        """Starts the connection if needed and waits until it is up."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        await self._connected.wait()
        if self._error is not None:
            raise self._error

    def room(
        self,
        room_id: str,
        *,
        since: int | None = None,
        on_reset: Callable[[int], Awaitable[None] | None] | None = None,
        on_frame: Callable[[dict], None] | None = None,
    ) -> Room:
        """Receives a room's events (iterate the answer): each once, in seq order,
        across reconnects. `since`: the last seq the application holds (events after
        it come first); absent, live events only. `on_reset(seq)` runs when the client
        is further behind than the server replays: reload history there."""
        if room_id in self._rooms:
            raise HarkError("already_subscribed", "This client already receives this room")
        room = Room(room_id, self, since=since, on_reset=on_reset, on_frame=on_frame)
        self._rooms[room_id] = room
        if self.state == "connected":
            asyncio.get_running_loop().create_task(self._subscribe(room))
        return room

    async def feed(self, **options: Any) -> Room:
        """Receives the user's own feed (rooms added and removed, unread, mentions)."""
        await self.ready()
        return self.room(self.user_id, **options)

    async def send(self, room_id: str, body: str | None = None, *, retries: int = 5, **fields: Any) -> dict:
        """Sends a message over the socket when it is up, over REST otherwise, with one
        `client_id` for every attempt (a retry never writes a second message).
        Transient failures are retried with backoff; a refusal raises at once."""
        message = {**fields, "client_id": fields.get("client_id") or str(uuid.uuid4())}
        if body is not None:
            message["body"] = body
        for attempt in itertools.count():
            try:
                if self.state == "connected":
                    return await self._request({"op": "send", "room_id": room_id, **message})
                return await self._rest("POST", f"/v1/rooms/{room_id}/messages", message)
            except HarkError as error:
                if not error.transient or attempt >= retries:
                    raise
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    async def mark_read(self, room_id: str, seq: int) -> dict:
        """Moves the user's read marker in a room to `seq` (never backwards)."""
        if self.state == "connected":
            return await self._request({"op": "read", "room_id": room_id, "seq": seq})
        return await self._rest("POST", f"/v1/rooms/{room_id}/read", {"seq": seq})

    def rest(self):
        """The generated REST client (`hark_client`), with the current token, for any
        operation: `from hark_client.api.messages import list_messages`."""
        from hark_client import AuthenticatedClient

        return AuthenticatedClient(base_url=self.url, token=self._token or "")

    async def close(self) -> None:
        """Closes the connection and ends every subscription."""
        self._stopped = True
        for room in list(self._rooms.values()):
            room.close()
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()
        self.state = "closed"

    # The connection.

    async def _run(self) -> None:
        failures = 0
        reason = "connect"
        while not self._stopped:
            code = 1006
            refresher: asyncio.Task | None = None
            try:
                token = await self._token_for(reason)
            except Exception:
                # The application could not answer a token (its refresh failed): asked
                # again, for the same reason, after the backoff.
                log.warning("get_token failed", exc_info=True)
                failures += 1
                self.state = "reconnecting"
                await asyncio.sleep(min(self._backoff.maximum, self._backoff.initial * 2**failures))
                continue
            reason = "connect"
            socket = None
            try:
                async with open_websocket(f"{self.url.replace('http', 'ws', 1)}/v1/ws", open_timeout=10) as socket:
                    self._socket = socket
                    reader = asyncio.get_running_loop().create_task(self._read(socket))
                    await self._request({"op": "auth", "token": token})
                    failures = 0
                    self.state = "connected"
                    self._connected.set()
                    refresher = asyncio.get_running_loop().create_task(self._refresh(token))
                    for room in list(self._rooms.values()):
                        asyncio.get_running_loop().create_task(self._subscribe(room))
                    await reader
                code = socket.close_code or 1006
            except HarkError as error:
                if error.code in (CONNECTION_LOST, TIMEOUT):
                    code = (socket.close_code if socket is not None else None) or 1006
                else:
                    # The auth frame was refused; the server closes as these codes say.
                    code = 4008 if error.code == "too_many_connections" else 4001
            except (OSError, InvalidHandshake, ConnectionClosed, asyncio.TimeoutError):
                # The close code says why; a socket that never opened or closed
                # without one counts as a dropped connection.
                code = (socket.close_code if socket is not None else None) or 1006
            finally:
                if refresher is not None:
                    refresher.cancel()
                self._socket = None
                self._fail_pending()
            if self._stopped:
                return
            decision = after_close(code, failures, self._backoff)
            if not isinstance(decision, Retry):
                self._error = decision
                self._stopped = True
                self.state = "closed"
                self._connected.set()
                for room in list(self._rooms.values()):
                    room.end(decision)
                return
            if decision.counts_as_failure:
                failures += 1
            reason = decision.token
            self.state = "reconnecting"
            self._connected.clear()
            await asyncio.sleep(decision.delay)

    async def _read(self, socket: ClientConnection) -> None:
        try:
            async for text in socket:
                self._receive(json.loads(text))
        except ConnectionClosed:
            pass
        # Answers that will not come: their askers learn it now, not at their timeout.
        self._fail_pending()

    def _receive(self, frame: dict) -> None:
        op = frame.get("op")
        if op in ("ack", "error", "pong"):
            future = self._pending.pop(frame.get("ref") or "", None)
            if future is None or future.done():
                if op == "error":
                    log.warning("error frame: %s", frame)
                return
            if op == "error":
                future.set_exception(HarkError(frame["code"], frame["message"], field=frame.get("field")))
            else:
                future.set_result(frame.get("result"))
            return
        room = self._rooms.get(frame.get("room_id", ""))
        if room is None:
            return
        if op == "event":
            room.receive({key: value for key, value in frame.items() if key != "op"})
        elif op == "reset":
            room.reset(frame["seq"])
        elif op == "unsubscribed":
            room.end(HarkError(frame["reason"], "The server ended the subscription"))
        else:
            room.frame(frame)

    async def _request(self, frame: dict) -> Any:
        socket = self._socket
        if socket is None:
            raise HarkError(CONNECTION_LOST, "Not connected")
        ref = str(next(self._refs))
        future = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            await socket.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, self._ack_timeout)
        except ConnectionClosed as error:
            raise HarkError(CONNECTION_LOST, "The connection closed before the answer came") from error
        except asyncio.TimeoutError as error:
            raise HarkError(TIMEOUT, f"No answer to {frame['op']} within {self._ack_timeout} s") from error
        finally:
            self._pending.pop(ref, None)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HarkError(CONNECTION_LOST, "The connection closed before the answer came"))
        self._pending.clear()

    async def _subscribe(self, room: Room) -> None:
        frame = {"op": "subscribe", "room_id": room.room_id}
        if room.last_seq is not None:
            frame["since"] = room.last_seq
        try:
            result = await self._request(frame)
        except HarkError as error:
            # A lost connection resubscribes after reconnecting; anything else is final.
            if error.code in (CONNECTION_LOST, TIMEOUT, "already_subscribed"):
                return
            room.end(error)
            return
        room.acknowledged(result["seq"])

    async def _refresh(self, token: str) -> None:
        """Re-authenticates on the open socket before each token expires."""
        while True:
            delay = refresh_delay(token)
            if delay is None:
                return
            await asyncio.sleep(delay)
            try:
                fresh = await self._token_for("expiring")
                await self._request({"op": "auth", "token": fresh})
                token = fresh
            except HarkError:
                # Tried again shortly; if the token runs out meanwhile, the server
                # closes with 4001 and the reconnect asks for a new one.
                log.warning("refreshing the connection's token failed", exc_info=True)
                await asyncio.sleep(2)

    async def _token_for(self, reason: str) -> str:
        """Asks the application for a token; concurrent askers share one call."""
        if self._token_call is None:
            self._token_call = asyncio.get_running_loop().create_task(self._ask_token(reason))
        try:
            return await asyncio.shield(self._token_call)
        finally:
            if self._token_call.done():
                self._token_call = None

    async def _ask_token(self, reason: str) -> str:
        token = self._get_token(reason)
        if asyncio.iscoroutine(token) or isinstance(token, Awaitable):
            token = await token
        self._token = token
        return token

    # REST, for the event log and sends while the socket is down.

    async def read_events(self, room_id: str, after: int) -> list[Event]:
        path = "/v1/users/me/event-log" if room_id == self.user_id else f"/v1/rooms/{room_id}/event-log"
        page = await self._rest("GET", f"{path}?after={after}&limit=1000")
        return page["items"]

    def release(self, room: Room) -> None:
        if self._rooms.get(room.room_id) is not room:
            return
        del self._rooms[room.room_id]
        if self.state == "connected" and not self._stopped:
            asyncio.get_running_loop().create_task(self._unsubscribe(room.room_id))

    async def _unsubscribe(self, room_id: str) -> None:
        try:
            await self._request({"op": "unsubscribe", "room_id": room_id})
        except HarkError:
            pass

    async def _rest(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call with the connection's token, once more with a new token after
        a 401; answers the JSON body or raises the server's error."""
        response = await self._http_call(method, path, body, self._token or await self._token_for("connect"))
        if response.status_code == 401:
            response = await self._http_call(method, path, body, await self._token_for("rejected"))
        if response.is_success:
            return response.json() if response.content else None
        try:
            error = response.json()
        except ValueError:
            error = {}
        raise HarkError(
            error.get("code", "unavailable"),
            error.get("message", f"HTTP {response.status_code}"),
            field=error.get("field"),
            status=response.status_code,
        )

    async def _http_call(self, method: str, path: str, body: Any, token: str) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=body, headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as error:
            raise HarkError(CONNECTION_LOST, f"The request failed: {error}") from error
