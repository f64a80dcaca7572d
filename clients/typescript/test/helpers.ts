/**
 * What the SDK tests do as an application would: register users, call the REST API,
 * answer tokens from a session (refreshing it when the SDK asks), and wait.
 * @module
 */
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect, type ConnectOptions, type HarkClient, type RoomEvent } from '../src/index.js';
import { PASSWORD } from './fleet.js';

export interface Session {
  access_token: string;
  refresh_token: string;
  user: { id: string; username: string };
}

export async function api(url: string, token: string | undefined, method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

export function register(url: string, tenant: string, username: string): Promise<Session> {
  return api(url, undefined, 'POST', '/v1/auth/register', { tenant, username, password: PASSWORD });
}

/** A room of `owner` that `members` joined by its invite code. */
export async function roomWith(url: string, owner: Session, members: Session[]): Promise<string> {
  const room = await api(url, owner.access_token, 'POST', '/v1/rooms', { name: 'sdk', visibility: 'private' });
  for (const member of members) await api(url, member.access_token, 'POST', '/v1/rooms/join', { code: room.invite_code });
  return room.id;
}

/**
 * A `getToken` for the SDK, as an application writes one: the session's token to
 * connect, a refreshed session when the SDK says the token is expiring or was
 * refused. Counts its refreshes.
 */
export function tokens(url: string, session: Session): ConnectOptions['getToken'] & { refreshes: number } {
  let current = session;
  const getToken = Object.assign(
    async ({ reason }: { reason: string }) => {
      if (reason !== 'connect') {
        current = await api(url, undefined, 'POST', '/v1/auth/refresh', { refresh_token: current.refresh_token });
        getToken.refreshes++;
      }
      return current.access_token;
    },
    { refreshes: 0 },
  );
  return getToken;
}

/** An SDK client on Node.js 20 (the `ws` package as its WebSocket). */
export function client(url: string, session: Session, options: Partial<ConnectOptions> = {}): HarkClient {
  return connect({
    url,
    getToken: tokens(url, session),
    WebSocket: WebSocket as unknown as ConnectOptions['WebSocket'],
    reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 },
    ...options,
  });
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `${what} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Asserts events hold every seq from `first` on, once each, in order. */
export function assertExactly(events: RoomEvent[], first: number, last: number): void {
  const seqs = events.map((event) => event.seq);
  const expected = Array.from({ length: last - first + 1 }, (_, index) => first + index);
  assert.deepEqual(seqs, expected, 'every event once, in seq order');
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
