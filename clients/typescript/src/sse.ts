/**
 * The fallback transport for networks where WebSockets fail: one Server-Sent Events
 * stream per subscription (`GET /v1/rooms/{id}/events`, `GET /v1/users/me/events`),
 * read with `fetch` so that the token goes in a header, in browsers and Node.js
 * alike. Each stream resumes with `since` = the subscription's last seq, so the same
 * subscription code keeps the order and drops the repeats.
 * @module
 */
import { HarkError } from './errors.js';
import { afterClose, type ReconnectOptions, type TokenReason } from './reconnect.js';
import type { RoomEvent } from './frames.js';
import type { RoomSubscription } from './room.js';

/** What a stream needs from its client. */
export interface SseHost {
  readonly baseUrl: string;
  readonly fetch: typeof fetch;
  readonly reconnect: ReconnectOptions;
  token(reason: TokenReason): Promise<string>;
  /** The path of a subscription's stream. */
  streamPath(room: RoomSubscription): string;
  /**
   * Where live events of a room start now (its newest seq), for a subscription without
   * `since`: a stream resumes from there even if it drops before its first event.
   * Undefined for the feed, whose stream starts at its first event.
   */
  newestSeq(room: RoomSubscription): Promise<number | undefined>;
  report(error: unknown): void;
}

/** The SSE streams of a client, one per subscription. */
export class SseStreams {
  private readonly host: SseHost;
  private readonly streams = new Map<RoomSubscription, AbortController>();

  constructor(host: SseHost) {
    this.host = host;
  }

  open(room: RoomSubscription): void {
    if (this.streams.has(room)) return;
    const abort = new AbortController();
    this.streams.set(room, abort);
    void this.run(room, abort.signal);
  }

  close(room: RoomSubscription): void {
    this.streams.get(room)?.abort();
    this.streams.delete(room);
  }

  closeAll(): void {
    for (const room of [...this.streams.keys()]) this.close(room);
  }

  /** Reads the stream until the subscription ends, reconnecting with backoff. */
  private async run(room: RoomSubscription, signal: AbortSignal): Promise<void> {
    let failures = 0;
    let reason: TokenReason = 'connect';
    while (!signal.aborted && !room.closed) {
      let status = 0;
      try {
        const token = await this.host.token(reason);
        reason = 'connect';
        if (room.lastSeq === undefined) {
          const newest = await this.host.newestSeq(room);
          if (newest === undefined) room.startAtFirstEvent();
          else room.acknowledged(newest);
        }
        const since = room.lastSeq;
        const query = since === undefined ? '' : `?since=${since}`;
        const response = await this.host.fetch(`${this.host.baseUrl}${this.host.streamPath(room)}${query}`, {
          headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' },
          signal,
        });
        status = response.status;
        if (response.status === 401) reason = 'rejected';
        else if (response.status === 403 || response.status === 404) {
          const body = await response.json().catch(() => ({}));
          room.end(new HarkError(body.code ?? 'forbidden', body.message ?? `HTTP ${response.status}`, { status }));
          return;
        }
        if (response.ok && response.body) {
          failures = 0;
          await this.read(response.body, room);
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof HarkError && (error.status === 403 || error.status === 404)) {
          room.end(error);
          return;
        }
        this.host.report(error);
      }
      if (signal.aborted || room.closed) return;
      // The stream ended: the instance stopped, or the connection broke. A 401 gets a
      // new token; anything else waits as a dropped WebSocket would.
      const decision = afterClose(status === 401 ? 4001 : 1006, failures++, this.host.reconnect);
      await new Promise((resolve) => setTimeout(resolve, decision.retry ? decision.delayMs : 1000));
    }
  }

  /** Parses `text/event-stream` and hands each event to the subscription. */
  private async read(body: ReadableStream<Uint8Array>, room: RoomSubscription): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    let name = 'message';
    let data: string[] = [];
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, '');
        buffer = buffer.slice(newline + 1);
        if (line === '') {
          if (data.length > 0) this.dispatch(room, name, data.join('\n'));
          name = 'message';
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''));
        } else if (line.startsWith('event:')) {
          name = line.slice(6).trim();
        }
      }
    }
  }

  private dispatch(room: RoomSubscription, name: string, data: string): void {
    const parsed = JSON.parse(data);
    if (name === 'reset') room.reset(parsed.seq);
    else room.receive(parsed as RoomEvent);
  }
}
