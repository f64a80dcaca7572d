"""Webhooks as a customer's backend receives them: a burst of 10,000 messages over ten
rooms, delivered to two endpoints made with the generated Python client, every
delivery verified with the Standard Webhooks reference library (`standardwebhooks`
from PyPI), every message delivered to each endpoint, repeats only under a webhook-id
already seen, and each room's messages in seq order. Run by scripts/client-tests.sh
against a server that allows local receivers (HARK_WEBHOOK_ALLOW_PRIVATE)."""

import asyncio
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
from standardwebhooks.webhooks import Webhook

from hark_client import AuthenticatedClient, Client
from hark_client.api.rooms import create_room
from hark_client.api.tenants import create_tenant
from hark_client.api.webhooks import create_webhook, list_webhook_deliveries
from hark_client.models import (
    CreateRoomRequest,
    CreateTenantRequest,
    CreateWebhookRequest,
    OwnerRequest,
    Visibility,
    WebhookEventType,
)

BASE_URL = os.environ.get("HARK_URL", "http://127.0.0.1:8080")
PASSWORD = "correct horse battery staple"
ROOMS = 10
PER_ROOM = 1000


class Receiver:
    """An HTTP endpoint on a port of its own that keeps every request it gets."""

    def __init__(self):
        received = self.received = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.received)


async def send_burst(token, room_id, count):
    """Sends `count` messages into a room over one WebSocket, pipelined; answers the
    seqs the server acknowledged."""
    url = BASE_URL.replace("http", "ws", 1) + "/v1/ws"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        for n in range(count):
            await socket.send(json.dumps({"op": "send", "ref": str(n), "room_id": room_id, "body": f"burst {n}"}))
        seqs = []
        while len(seqs) < count:
            frame = json.loads(await socket.recv())
            if frame["op"] == "ack":
                seqs.append(frame["result"]["seq"])
            assert frame["op"] != "error", frame
        return seqs


def test_a_burst_of_ten_thousand_messages_reaches_two_endpoints_verified_and_in_room_order():
    slug = f"hooks-{int(time.time() * 1000)}"
    anonymous = Client(base_url=BASE_URL, raise_on_unexpected_status=True)
    owner = create_tenant.sync(
        client=anonymous,
        body=CreateTenantRequest(slug=slug, name="Webhooks", owner=OwnerRequest(username="owner", password=PASSWORD)),
    ).session
    as_owner = AuthenticatedClient(base_url=BASE_URL, token=owner.access_token, raise_on_unexpected_status=True)

    receivers = [Receiver(), Receiver()]
    endpoints = []
    for receiver in receivers:
        created = create_webhook.sync(
            client=as_owner,
            body=CreateWebhookRequest(url=receiver.url, event_types=[WebhookEventType.MESSAGE_CREATED]),
        )
        assert created.secret.startswith("whsec_")
        endpoints.append((receiver, created))
    rooms = [
        str(create_room.sync(client=as_owner, body=CreateRoomRequest(name=f"r{n}", visibility=Visibility.PRIVATE)).id)
        for n in range(ROOMS)
    ]

    started = time.monotonic()

    async def burst():
        return await asyncio.gather(*(send_burst(owner.access_token, room, PER_ROOM) for room in rooms))

    sent = dict(zip(rooms, asyncio.run(burst())))
    sent_in = time.monotonic() - started
    total = ROOMS * PER_ROOM

    deadline = time.monotonic() + 300
    while any(receiver.count() < total for receiver in receivers) and time.monotonic() < deadline:
        time.sleep(0.2)
    delivered_in = time.monotonic() - started

    for receiver, created in endpoints:
        verifier = Webhook(created.secret)
        seen_ids, by_room = set(), {room: [] for room in rooms}
        for headers, body in receiver.received:
            payload = verifier.verify(body, headers)
            message_id = headers["webhook-id"]
            data = payload["data"]
            if message_id in seen_ids:
                continue
            seen_ids.add(message_id)
            by_room[data["room_id"]].append(data["seq"])
        repeats = len(receiver.received) - len(seen_ids)
        for room in rooms:
            assert by_room[room] == sorted(sent[room]), f"room {room}: every message once, in seq order"
        # A receiver has a delivery as soon as it answers; the server records it just after.
        for _ in range(100):
            page = list_webhook_deliveries.sync(created.webhook.id, client=as_owner, limit=5)
            if all(item.state == "delivered" for item in page.items):
                break
            time.sleep(0.1)
        assert all(item.state == "delivered" for item in page.items)
        print(
            f"endpoint {created.webhook.id}: {len(receiver.received)} deliveries verified, "
            f"{len(seen_ids)} distinct, {repeats} repeats"
        )
    print(
        f"{total} messages sent in {sent_in:.1f} s; both endpoints had every one after {delivered_in:.1f} s "
        f"({2 * total / delivered_in:.0f} deliveries/s, debug build)"
    )
