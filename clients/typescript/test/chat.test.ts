// The helpers a chat UI uses: sends that stay idempotent across a cut connection,
// typing throttled, presence, read markers, and unread counts kept current from
// events. And the frames the SDK handles are the ones openapi/asyncapi.yaml documents.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { parse } from 'yaml';
import { CLIENT_OPS, SERVER_OPS, type PresenceFrame, type TypingFrame } from '../src/index.js';
import { createTenant, Fleet } from './fleet.js';
import { api, client, register, roomWith, sleep, waitFor } from './helpers.js';

let fleet: Fleet;
before(async () => {
  fleet = await Fleet.start({ instances: 1 });
});
after(async () => {
  await fleet?.stop();
});

test('a send retried after its connection was cut is stored once, and a send without a socket goes over REST', async () => {
  const { owner } = await createTenant(fleet.url);
  const roomId = await roomWith(fleet.url, owner, []);
  const sdk = client(fleet.url, owner);
  await sdk.ready();
  const first = await sdk.send(roomId, { body: 'hello', client_id: 'once' });
  const again = await sdk.send(roomId, { body: 'hello', client_id: 'once' });
  assert.equal(again.id, first.id, 'the same client_id answers the message already written');

  // Cut the connection under a send: the SDK retries (over REST while the socket is
  // down, or over the new socket) with the same client_id.
  const sending = sdk.send(roomId, { body: 'through a cut' });
  fleet.cut();
  const sent = await sending;
  const page = await api(fleet.url, owner.access_token, 'GET', `/v1/rooms/${roomId}/messages?limit=100`);
  assert.equal(page.items.filter((message: any) => message.body === 'through a cut').length, 1);
  assert.equal(page.items.find((message: any) => message.body === 'through a cut').id, sent.id);

  const refused = await sdk.send(roomId, { body: 'x'.repeat(20_000) }).catch((error) => error);
  assert.equal(refused.code, 'body_too_long', 'a refusal throws its code at once');
  sdk.close();
});

test('typing is throttled, presence and read markers reach the other member, and unread counts follow events', async () => {
  const { slug, owner } = await createTenant(fleet.url);
  const ana = await register(fleet.url, slug, 'ana');
  const roomId = await roomWith(fleet.url, owner, [ana]);
  const ownerSdk = client(fleet.url, owner);
  const anaSdk = client(fleet.url, ana);
  const typing: TypingFrame[] = [];
  const presence: PresenceFrame[] = [];
  const reads: number[] = [];
  const ownerRoom = ownerSdk.room(roomId, {
    onTyping: (frame) => typing.push(frame),
    onPresence: (frame) => presence.push(frame),
    onRead: (frame) => reads.push(frame.seq),
  });
  await ownerSdk.ready();
  await waitFor('owner subscribed', () => ownerRoom.lastSeq !== undefined);
  const unread = await anaSdk.unreadCounts();
  anaSdk.room(roomId);

  await waitFor('ana online in the room', () => ownerRoom.online.has(ana.user.id));
  assert.equal(anaSdk.typing(roomId), true);
  assert.equal(anaSdk.typing(roomId), false, 'a second signal within 3 s is not sent');
  await waitFor('ana typing', () => typing.length === 1);
  await sleep(300);
  assert.equal(typing.length, 1);

  for (let index = 0; index < 3; index++) await ownerSdk.send(roomId, { body: `unread ${index}` });
  await waitFor('three unread', () => unread.room(roomId).unread === 3);
  const mention = await ownerSdk.send(roomId, { body: '@ana look', mentions: [ana.user.id] });
  await waitFor('the mention counted', () => unread.room(roomId).mentions === 1 && unread.room(roomId).unread === 4);
  assert.equal(unread.total, 4);

  const marker = await anaSdk.markRead(roomId, mention.seq);
  assert.equal(marker.unread_count, 0);
  await waitFor('unread cleared from feed.read', () => unread.room(roomId).unread === 0 && unread.room(roomId).mentions === 0);
  await waitFor('the read marker reached the owner', () => reads.includes(mention.seq));

  anaSdk.close();
  await waitFor('ana offline', () => !ownerRoom.online.has(ana.user.id), 10_000);
  assert.deepEqual(
    presence.filter((frame) => frame.user.id === ana.user.id).map((frame) => frame.status),
    ['online', 'offline'],
  );
  ownerSdk.close();
});

test("the frames the SDK sends and handles are the AsyncAPI document's", async () => {
  const document = parse(await readFile(new URL('../../../openapi/asyncapi.yaml', import.meta.url), 'utf8'));
  const resolve = (reference: { $ref: string }): any =>
    reference.$ref
      .slice(2)
      .split('/')
      .reduce((node: any, key) => node[key], document);
  const name = (reference: { $ref: string }): string => {
    const message = resolve(reference);
    return message.$ref ? resolve(message).name : message.name;
  };
  const operations = Object.values(document.operations as Record<string, any>);
  // The document is written from the server's side: it receives the client's frames,
  // and sends its own and the replies.
  const received = operations.filter((operation) => operation.action === 'receive').flatMap((operation) => operation.messages.map(name));
  const sent = operations.flatMap((operation) => [
    ...(operation.action === 'send' ? operation.messages.map(name) : []),
    ...(operation.reply?.messages ?? []).map(name),
  ]);
  assert.deepEqual([...CLIENT_OPS].sort(), [...new Set(received)].sort());
  assert.deepEqual([...SERVER_OPS].sort(), [...new Set(sent)].sort());
});

test('an SSE subscription without since resumes from where it started when its stream drops before any event', async () => {
  const { owner } = await createTenant(fleet.url);
  const roomId = await roomWith(fleet.url, owner, []);
  const sdk = client(fleet.url, owner, { transport: 'sse' });
  const room = sdk.room(roomId);
  await waitFor('the start known', () => room.lastSeq !== undefined);
  const start = room.lastSeq!;
  await sleep(200);
  // The stream drops, and a message is written before it is back.
  fleet.cut();
  const message = await api(fleet.url, owner.access_token, 'POST', `/v1/rooms/${roomId}/messages`, { body: 'while away' });
  await waitFor('the message delivered', () => room.lastSeq === message.seq);
  assert.equal(message.seq, start + 1);
  assert.equal(room.stats.delivered, 1);
  sdk.close();
});
