"""The Python SDK against real servers: a subscriber keeps exactly its room's events,
in order, while instances are killed and restarted, its socket is cut and the LISTEN
connections are terminated; a token that expires mid-session is refreshed on the open
socket; a client behind the replay window gets `reset` through its hook, as does one
whose gap the REST log no longer holds (retention trimmed it)."""

import asyncio
import threading
import time

import hark
from conftest import Fleet, api, tenant_with_room, tokens


def write(url, owner, room_id, count, sent):
    """Sends `count` messages through the proxy, each retried (with its client_id) until
    an instance that is up takes it."""
    for index in range(count):
        body = {"body": f"message {index}", "client_id": f"py-{room_id}-{index}"}
        while True:
            try:
                sent.append(api(url, owner["access_token"], "POST", f"/v1/rooms/{room_id}/messages", body)["id"])
                break
            except Exception:
                time.sleep(0.05)
        time.sleep(0.015)


async def collect(room, until_seq_of, events):
    async for event in room:
        events.append(event)
        if event["seq"] >= until_seq_of():
            return


def test_a_subscriber_keeps_exactly_the_rooms_events_in_order_while_instances_fail():
    fleet = Fleet({"instances": 2})
    try:
        owner, (reader,), room_id = tenant_with_room(fleet.url, "reader")
        sent: list[str] = []
        done: list[str] = []

        def at(count):
            while len(sent) < count:
                time.sleep(0.02)

        def faults():
            at(40)
            fleet.command("kill", 0)
            done.append("instance 0 killed")
            at(70)
            fleet.command("restart", 0)
            done.append("instance 0 restarted")
            at(100)
            done.append(f"{fleet.command('cut')} connections cut")
            at(130)
            done.append(f"{fleet.command('terminate_listeners')} LISTEN connections terminated")
            at(160)
            fleet.command("term", 1)
            fleet.command("restart", 1)
            done.append("instance 1 restarted after 1012")
            at(200)
            done.append(f"{fleet.command('cut')} connections cut")

        async def scenario():
            client = hark.connect(fleet.url, tokens(fleet.url, reader))
            await client.ready()
            room = client.room(room_id, since=0)
            events: list[dict] = []
            writer = threading.Thread(target=write, args=(fleet.url, owner, room_id, 250, sent))
            chaos = threading.Thread(target=faults)
            writer.start()
            chaos.start()
            last = {"seq": 10**9}
            collecting = asyncio.get_running_loop().create_task(collect(room, lambda: last["seq"], events))
            while writer.is_alive() or chaos.is_alive():
                await asyncio.sleep(0.1)
            last["seq"] = api(fleet.url, owner["access_token"], "GET", f"/v1/rooms/{room_id}")["last_seq"]
            if events and events[-1]["seq"] >= last["seq"]:
                collecting.cancel()
            else:
                await asyncio.wait_for(collecting, 60)
            await client.close()
            return room, events, last["seq"]

        room, events, last = asyncio.run(scenario())
        print(f"python: {', '.join(done)}; {len(events)} events, {room.stats}")
        assert [event["seq"] for event in events] == list(range(1, last + 1)), "every event once, in seq order"
        assert [event["data"]["id"] for event in events if event["type"] == "message.created"] == sent
    finally:
        fleet.stop()


def test_a_token_that_expires_mid_session_is_refreshed_and_a_client_behind_the_window_is_reset():
    fleet = Fleet({"instances": 1, "env": {"HARK_ACCESS_TOKEN_TTL_SECONDS": "3", "HARK_REPLAY_WINDOW": "20"}})
    try:
        owner, (reader,), room_id = tenant_with_room(fleet.url, "reader")

        async def scenario():
            get_token = tokens(fleet.url, reader)
            writer_token = tokens(fleet.url, owner)
            client = hark.connect(fleet.url, get_token)
            await client.ready()
            room = client.room(room_id, since=0)
            states = []
            started = time.monotonic()
            token = owner["access_token"]
            index = 0
            while time.monotonic() - started < 8:
                if index % 20 == 19:
                    token = await writer_token("expiring")
                await asyncio.to_thread(
                    api, fleet.url, token, "POST", f"/v1/rooms/{room_id}/messages", {"body": f"tick {index}"}
                )
                states.append(client.state)
                index += 1
                await asyncio.sleep(0.1)
            last = api(fleet.url, token, "GET", f"/v1/rooms/{room_id}")["last_seq"]
            events = []
            await asyncio.wait_for(collect(room, lambda: last, events), 30)
            assert [event["seq"] for event in events] == list(range(1, last + 1))
            assert len(get_token.refreshes) >= 2, get_token.refreshes
            assert set(states) == {"connected"}, "the socket stayed open while tokens expired"
            held = room.last_seq
            await client.close()

            # 30 messages while away: beyond the window of 20.
            for away in range(30):
                token = await writer_token("expiring") if away == 0 else token
                await asyncio.to_thread(
                    api, fleet.url, token, "POST", f"/v1/rooms/{room_id}/messages", {"body": f"away {away}"}
                )
            resets = []

            async def reload(seq):
                resets.append(seq)
                await asyncio.sleep(0.2)

            # The same session, whose refresh token moved on with the first client; its
            # access token has expired by now: the server refuses it (4001) and the SDK
            # asks for a new one.
            await asyncio.sleep(3.5)
            again = hark.connect(fleet.url, get_token)
            await asyncio.wait_for(again.ready(), 20)
            resumed = again.room(room_id, since=held, on_reset=reload)
            while not resets:
                await asyncio.sleep(0.05)
            message = await asyncio.to_thread(
                api, fleet.url, token, "POST", f"/v1/rooms/{room_id}/messages", {"body": "after"}
            )
            after = []
            await asyncio.wait_for(collect(resumed, lambda: message["seq"], after), 30)
            assert len(resets) == 1
            assert [event["seq"] for event in after] == list(range(resets[0] + 1, message["seq"] + 1))
            await again.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()


def test_a_gap_the_log_no_longer_holds_resets_through_the_hook():
    fleet = Fleet({"instances": 1})
    try:
        owner, (reader,), room_id = tenant_with_room(fleet.url, "reader")
        for index in range(8):
            api(fleet.url, owner["access_token"], "POST", f"/v1/rooms/{room_id}/messages", {"body": f"m {index}"})
        log = api(fleet.url, owner["access_token"], "GET", f"/v1/rooms/{room_id}/event-log")["items"]
        last = log[-1]["seq"]
        # What retention leaves: the log without its first events, and its mark.
        fleet.command("sql", f"delete from hark.room_events where room_id = '{room_id}' and seq < {last - 1}")
        fleet.command(
            "sql",
            f"insert into hark.room_retention (tenant_id, room_id, events_to_seq) "
            f"select tenant_id, id, {last - 2} from hark.rooms where id = '{room_id}'",
        )

        # No socket opens meanwhile, so that only the REST log can answer the gap (the
        # server would otherwise reset the subscription itself).
        fleet.command("refuse_websockets", True)

        async def scenario():
            client = hark.connect(fleet.url, tokens(fleet.url, reader))
            # The client starts (and takes its token) but its sockets are refused.
            connecting = asyncio.ensure_future(client.ready())
            resets = []
            room = client.room(room_id, since=0, on_reset=resets.append)
            # Seq 1, then the newest: the ones between are missing, and the log lost them.
            room.receive(log[0])
            room.receive(log[-1])
            events = []
            await asyncio.wait_for(collect(room, lambda: last, events), 15)
            assert resets == [last - 1]
            assert [event["seq"] for event in events] == [log[0]["seq"], last]
            connecting.cancel()
            await client.close()

        asyncio.run(scenario())
    finally:
        fleet.stop()
