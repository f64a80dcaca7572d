"""Hark's real-time SDK for Python (asyncio), with the generated REST client
(`hark_client`) alongside:

    async with hark.connect(url, get_token) as client:
        async for event in client.room(room_id, since=0):
            print(event["seq"], event["type"])
"""

from .client import Client, GetToken, connect
from .errors import HarkError
from .reconnect import Backoff
from .room import Room, RoomStats

__all__ = ["Backoff", "Client", "GetToken", "HarkError", "Room", "RoomStats", "connect"]
