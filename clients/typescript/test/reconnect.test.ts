// The close-code table of openapi/websocket.md, as the SDK acts on it, and when it
// re-authenticates before a token expires.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { afterClose } from '../src/index.js';
import { refreshDelay } from '../src/reconnect.js';

const half = () => 0.5;

test('each close code gets what the protocol document says the client does', () => {
  const restart = afterClose(1012, 3, {}, half);
  assert.ok(restart.retry && restart.delayMs < 250 && !restart.countsAsFailure, '1012: at once, to any instance');
  const slow = afterClose(4009, 3, {}, half);
  assert.ok(slow.retry && slow.delayMs < 100 && !slow.countsAsFailure, '4009: resume at once');
  const refused = afterClose(4001, 0, {}, half);
  assert.ok(refused.retry && refused.token === 'rejected' && refused.delayMs === 0, '4001: a new token, at once the first time');
  const limited = afterClose(4008, 0, {}, half);
  assert.ok(limited.retry && limited.delayMs >= 5_000, '4008: back off');
  for (const code of [4003, 4400]) {
    const stop = afterClose(code, 0, {}, half);
    assert.ok(!stop.retry && stop.error.closeCode === code, `${code}: stop and report`);
  }
  const delays = [0, 1, 2, 3, 4, 5, 6, 10].map((failures) => {
    const decision = afterClose(1006, failures, { initialDelayMs: 250, maxDelayMs: 10_000 }, half);
    return decision.retry ? decision.delayMs : -1;
  });
  assert.deepEqual(delays, [187.5, 375, 750, 1500, 3000, 6000, 7500, 7500], '1006: exponential with jitter, capped');
});

test('a token is renewed a fifth of its life before it ends, at most a minute before', () => {
  const token = (exp: number) => `h.${Buffer.from(JSON.stringify({ exp })).toString('base64url')}.s`;
  const now = 1_000_000_000_000;
  assert.equal(refreshDelay(token(now / 1000 + 10), now), 8_000);
  assert.equal(refreshDelay(token(now / 1000 + 900), now), 840_000);
  assert.equal(refreshDelay('not a token', now), undefined);
});
