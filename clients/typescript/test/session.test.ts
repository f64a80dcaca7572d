// The SDK's session: a token that expires mid-session is refreshed on the open socket
// without a gap or a reconnect; a client behind the replay window gets `reset` through
// its hook and continues after it; a gap in what the transport delivered is filled
// from the REST log before anything later is handed out, and one the log no longer
// holds (retention trimmed it) resets through the hook.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RoomEvent } from '../src/index.js';
import { createTenant, Fleet } from './fleet.js';
import { api, assertExactly, client, register, roomWith, sleep, tokens, waitFor } from './helpers.js';

let fleet: Fleet;
before(async () => {
  // Tokens live 3 s; a client more than 20 events behind is reset.
  fleet = await Fleet.start({ env: { HARK_ACCESS_TOKEN_TTL_SECONDS: '3', HARK_REPLAY_WINDOW: '20' } });
});
after(async () => {
  await fleet?.stop();
});

test('a token that expires mid-session is refreshed on the open socket, without a gap or a reconnect', async () => {
  const { slug, owner } = await createTenant(fleet.url);
  const reader = await register(fleet.url, slug, 'reader');
  const roomId = await roomWith(fleet.url, owner, [reader]);
  const getToken = tokens(fleet.url, reader);
  const sdk = client(fleet.url, reader, { getToken });
  const states: string[] = [];
  sdk.on('state', (state) => states.push(state));
  const events: RoomEvent[] = [];
  const room = sdk.room(roomId, { since: 0, onEvent: (event) => events.push(event) });
  await sdk.ready();

  // Ten seconds of messages: the token expires three times meanwhile. The writer
  // refreshes its own session the same way.
  const writer = tokens(fleet.url, owner);
  let token = owner.access_token;
  const started = Date.now();
  for (let index = 0; Date.now() - started < 10_000; index++) {
    if (index % 20 === 19) token = await writer({ reason: 'expiring' });
    await api(fleet.url, token, 'POST', `/v1/rooms/${roomId}/messages`, { body: `tick ${index}` });
    await sleep(100);
  }
  const last = (await api(fleet.url, token, 'GET', `/v1/rooms/${roomId}`)).last_seq;
  await waitFor('every event delivered', () => room.lastSeq === last);
  assertExactly(events, 1, last);
  assert.ok(getToken.refreshes >= 3, `the SDK asked for a fresh token as each expired (${getToken.refreshes} times)`);
  assert.deepEqual(states, ['connected'], 'the socket stayed open throughout');
  sdk.close();
});

test('a client further behind than the replay window gets reset through its hook, and events continue after it', async () => {
  const { slug, owner } = await createTenant(fleet.url);
  const reader = await register(fleet.url, slug, 'reader');
  const roomId = await roomWith(fleet.url, owner, [reader]);
  const first = client(fleet.url, reader);
  const room = first.room(roomId);
  await first.ready();
  await waitFor('subscribed', () => room.lastSeq !== undefined);
  const heldSeq = room.lastSeq!;
  first.close();

  // 30 messages while the reader is away: more than the window of 20.
  for (let index = 0; index < 30; index++) {
    await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: `away ${index}` });
  }
  const resets: number[] = [];
  const events: RoomEvent[] = [];
  let reloaded = false;
  const second = client(fleet.url, reader);
  const resumed = second.room(roomId, {
    since: heldSeq,
    onReset: async ({ seq }) => {
      resets.push(seq);
      // The application reloads history here; events wait for it.
      await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}/messages?limit=50`);
      await sleep(200);
      reloaded = true;
    },
    onEvent: (event) => {
      assert.ok(reloaded, 'no event is handed out before the reset hook finished');
      events.push(event);
    },
  });
  await second.ready();
  await waitFor('the reset', () => resets.length === 1);
  const message = await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: 'after' });
  await waitFor('the next message', () => resumed.lastSeq === message.seq);
  assertExactly(events, resets[0] + 1, message.seq);
  assert.equal(resumed.stats.resets, 1);
  second.close();
});

test('events that arrive after a missing one wait while the missing ones are read from the REST log', async () => {
  const { slug, owner } = await createTenant(fleet.url);
  const roomId = await roomWith(fleet.url, owner, []);
  for (let index = 0; index < 5; index++) {
    await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: `m ${index}` });
  }
  const log: RoomEvent[] = (await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}/event-log`)).items;
  const sdk = client(fleet.url, owner);
  const errors: unknown[] = [];
  sdk.on('error', (error) => errors.push(error));
  await sdk.ready();
  // The subscription as the client makes it, fed by hand: seq 1, then the last two
  // (the transport lost the ones between).
  const delivered: RoomEvent[] = [];
  const room = sdk.room(roomId, { since: 0, onEvent: (event) => delivered.push(event) });
  room.receive(log[0]);
  room.receive(log.at(-1)!);
  room.receive(log.at(-2)!);
  room.receive(log[0]);
  await waitFor('the gap filled', () => room.lastSeq === log.at(-1)!.seq);
  assertExactly(delivered, 1, log.at(-1)!.seq);
  assert.ok(room.stats.filled >= log.length - 3, `the missing events came from the log (${room.stats.filled})`);
  assert.ok(room.stats.repeats >= 1, 'the repeat was dropped');
  // The transport's own replay of the same events must not disturb what follows.
  const next = await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: 'next' });
  await waitFor('the next message', () => room.lastSeq === next.seq);
  assertExactly(delivered, 1, next.seq);
  assert.deepEqual(errors, [], 'nothing went wrong on the way');
  sdk.close();
});

test('a gap the REST log no longer holds (retention trimmed it) resets through the hook instead of reading for ever', async () => {
  const { owner } = await createTenant(fleet.url);
  const roomId = await roomWith(fleet.url, owner, []);
  for (let index = 0; index < 8; index++) {
    await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: `m ${index}` });
  }
  const log: RoomEvent[] = (await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}/event-log`)).items;
  const last = log.at(-1)!;
  // What retention leaves: the log without its first events, and its mark.
  fleet.sql(`delete from hark.room_events where room_id = '${roomId}' and seq < ${last.seq - 1}`);
  fleet.sql(`insert into hark.room_retention (tenant_id, room_id, events_to_seq)
             select tenant_id, id, ${last.seq - 2} from hark.rooms where id = '${roomId}'`);
  // No socket opens meanwhile, so that only the REST log can answer the gap (the
  // server would otherwise reset the subscription itself).
  fleet.refuseWebSockets = true;
  try {
    const sdk = client(fleet.url, owner);
    const resets: number[] = [];
    const delivered: RoomEvent[] = [];
    const room = sdk.room(roomId, {
      since: 0,
      onEvent: (event) => delivered.push(event),
      onReset: ({ seq }) => {
        resets.push(seq);
      },
    });
    // Seq 1, then the newest: the ones between are missing, and the log has lost them.
    room.receive(log[0]);
    room.receive(last);
    await waitFor('the reset', () => resets.length === 1);
    assert.deepEqual(resets, [last.seq - 1]);
    await waitFor('the newest event after the reset', () => room.lastSeq === last.seq);
    assert.deepEqual(
      delivered.map((event) => event.seq),
      [log[0].seq, last.seq],
    );
    sdk.close();
  } finally {
    fleet.refuseWebSockets = false;
  }
});
