// An SDK subscriber keeps exactly its room's events, in order, while the servers
// under it fail in every way the protocol promises to survive: instances killed and
// restarted, sockets cut, LISTEN connections terminated, an instance restarting
// (1012). Over WebSocket, over SSE, and with WebSockets blocked by a proxy (the
// automatic fallback to SSE).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { RoomEvent } from '../src/index.js';
import { createTenant, Fleet } from './fleet.js';
import { api, assertExactly, client, register, roomWith, sleep, waitFor, type Session } from './helpers.js';

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start();
});
after(async () => {
  await fleet?.stop();
});

/** Sends `count` messages, each to the instances in turn until one acknowledges it (same client_id). */
async function write(owner: Session, roomId: string, count: number, sent: string[]): Promise<void> {
  for (let index = 0; index < count; index++) {
    const body = { body: `message ${index}`, client_id: `write-${roomId}-${index}` };
    for (let attempt = 0; ; attempt++) {
      const instance = fleet.instances[(index + attempt) % fleet.instances.length];
      try {
        const message = await api(`http://127.0.0.1:${instance.port}`, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, body);
        sent.push(message.id);
        break;
      } catch {
        await sleep(50);
      }
    }
    await sleep(15);
  }
}

/** Runs the faults while the writer has not reached each threshold. */
async function faults(sent: string[]): Promise<string[]> {
  const done: string[] = [];
  const at = (count: number) => waitFor(`${count} messages written`, () => sent.length >= count, 60_000);
  await at(40);
  await fleet.kill(0);
  done.push('instance 0 killed');
  await at(70);
  await fleet.restart(0);
  done.push('instance 0 restarted');
  await at(100);
  done.push(`${fleet.cut()} connections cut`);
  await at(130);
  done.push(`${fleet.terminateListeners()} LISTEN connections terminated`);
  await at(160);
  await fleet.kill(1, 'SIGTERM');
  done.push('instance 1 stopped (1012)');
  await fleet.restart(1);
  done.push('instance 1 restarted');
  await at(200);
  done.push(`${fleet.cut()} connections cut`);
  return done;
}

for (const transport of ['websocket', 'sse'] as const) {
  test(`an SDK subscriber over ${transport} keeps exactly the room's events in order while instances are killed and restarted, its socket is cut and the LISTEN connections are terminated`, async () => {
    const { slug, owner } = await createTenant(fleet.url);
    const reader = await register(fleet.url, slug, 'reader');
    const roomId = await roomWith(fleet.url, owner, [reader]);

    const sdk = client(fleet.url, reader, { transport });
    const states: string[] = [];
    sdk.on('state', (state) => states.push(state));
    const events: RoomEvent[] = [];
    const room = sdk.room(roomId, { since: 0, onEvent: (event) => events.push(event) });
    await sdk.ready();

    const sent: string[] = [];
    const [, done] = await Promise.all([write(owner, roomId, 250, sent), faults(sent)]);
    console.log(`${transport}: ${done.join(', ')}`);

    const last = (await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}`)).last_seq;
    await waitFor('every event delivered', () => room.lastSeq === last, 60_000);
    assertExactly(events, 1, last);
    const delivered = events.filter((event) => event.type === 'message.created').map((event) => event.data.id);
    assert.deepEqual(delivered, sent, 'every acknowledged message, once, in the order written');
    assert.ok(states.includes('reconnecting') || transport === 'sse', 'the faults did reach the subscriber');
    console.log(`${transport}: ${events.length} events, stats ${JSON.stringify(room.stats)}, states ${states.join(' → ')}`);
    sdk.close();
  });
}

test('with WebSockets blocked by a proxy, the SDK falls back to SSE and keeps the room whole', async () => {
  const { slug, owner } = await createTenant(fleet.url);
  const reader = await register(fleet.url, slug, 'reader');
  const roomId = await roomWith(fleet.url, owner, [reader]);
  fleet.refuseWebSockets = true;
  try {
    const sdk = client(fleet.url, reader);
    const events: RoomEvent[] = [];
    const room = sdk.room(roomId, { since: 0, onEvent: (event) => events.push(event) });
    await sdk.ready();
    assert.equal(sdk.transportKind, 'sse');
    const sent: string[] = [];
    await write(owner, roomId, 20, sent);
    const message = await sdk.send(roomId, { body: 'sent over REST' });
    const last = (await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}`)).last_seq;
    await waitFor('every event delivered', () => room.lastSeq === last);
    assertExactly(events, 1, last);
    assert.equal(events.at(-1)!.data.id, message.id, "the SDK's own send arrives like any other");
    sdk.close();
  } finally {
    fleet.refuseWebSockets = false;
  }
});
