"""Real servers for the Python SDK's tests: the TypeScript SDK's test fleet
(clients/typescript/test/fleet.ts, two `hark serve` instances on a database of their
own behind a TCP proxy), driven as a program over JSON lines."""

import json
import secrets
import subprocess
from pathlib import Path

import httpx

TYPESCRIPT = Path(__file__).resolve().parents[2] / "typescript"
PASSWORD = "correct horse battery staple"


class Fleet:
    def __init__(self, settings: dict | None = None):
        self.process = subprocess.Popen(
            ["node", "--import", "tsx", "test/fleet.ts", json.dumps(settings or {})],
            cwd=TYPESCRIPT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = json.loads(self.process.stdout.readline())
        self.url = started["url"]

    def command(self, command: str, argument=None):
        """Runs a fleet command (kill, term, restart, cut, terminate_listeners, sql,
        refuse_websockets)."""
        self.process.stdin.write(json.dumps({"command": command, "argument": argument}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert answer["ok"], answer
        return answer["result"]

    def stop(self):
        self.process.stdin.write(json.dumps({"command": "stop"}) + "\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)


def api(url: str, token: str | None, method: str, path: str, body=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)
    assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
    return response.json() if response.content else None


def tenant_with_room(url: str, *members: str):
    """A tenant, its owner's session, sessions of `members`, and a room of them all."""
    slug = f"py-{secrets.token_hex(4)}"
    created = api(
        url,
        None,
        "POST",
        "/v1/tenants",
        {
            "slug": slug,
            "name": "Python SDK test",
            "registration_open": True,
            "owner": {"username": "owner", "password": PASSWORD},
        },
    )
    owner = created["session"]
    sessions = [
        api(url, None, "POST", "/v1/auth/register", {"tenant": slug, "username": name, "password": PASSWORD})
        for name in members
    ]
    room = api(url, owner["access_token"], "POST", "/v1/rooms", {"name": "py", "visibility": "private"})
    for session in sessions:
        api(url, session["access_token"], "POST", "/v1/rooms/join", {"code": room["invite_code"]})
    return owner, sessions, room["id"]


def tokens(url: str, session: dict):
    """A `get_token` as an application writes one: the session's token to connect, a
    refreshed session when the SDK says the token is expiring or was refused."""
    current = dict(session)
    refreshes = []

    async def get_token(reason: str) -> str:
        nonlocal current
        if reason != "connect":
            async with httpx.AsyncClient() as http:
                response = await http.post(f"{url}/v1/auth/refresh", json={"refresh_token": current["refresh_token"]})
                response.raise_for_status()
                current = response.json()
            refreshes.append(reason)
        return current["access_token"]

    get_token.refreshes = refreshes
    return get_token
