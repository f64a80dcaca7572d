/**
 * A subscription to one room's log (or the user's feed), which keeps Hark's delivery
 * guarantee whatever the transport does: each event is handed out once, in seq
 * order. Repeats after a resume are dropped by seq; an event that arrives after a
 * missing one waits while the missing ones are read from the REST event log; a
 * `reset` (the client was further behind than the server replays) calls the
 * application's hook and the events after it wait for the hook.
 * @module
 */
import { HarkError } from './errors.js';
import type { PresenceFrame, ReadMarkerFrame, RoomEvent, TypingFrame } from './frames.js';

/** What a subscriber hears. Every handler is optional. */
export interface RoomHandlers {
  /** Each event of the room, once, in seq order. */
  onEvent?: (event: RoomEvent) => void;
  /**
   * The client is further behind than the server replays (`HARK_REPLAY_WINDOW`):
   * reload the history over REST; the events that follow come after `seq`. Events
   * wait for the promise it answers, if any.
   */
  onReset?: (reset: { roomId: string; seq: number }) => void | Promise<void>;
  /** Someone is typing (not in the log). */
  onTyping?: (frame: TypingFrame) => void;
  /** A member's read marker moved (not in the log). */
  onRead?: (frame: ReadMarkerFrame) => void;
  /** A member came online or went offline (not in the log). */
  onPresence?: (frame: PresenceFrame) => void;
  /** The subscription ended for good: the user left the room or was removed, or the room is not theirs. */
  onEnd?: (error: HarkError) => void;
}

/** A subscription's options: its handlers and where to start. */
export interface RoomOptions extends RoomHandlers {
  /**
   * The last seq the application already holds (from history or an earlier
   * session): events after it are delivered first. Absent: live events only.
   */
  since?: number;
}

/** What a subscription needs from its client. */
export interface RoomHost {
  /** Events of the room with a seq greater than `after`, in order, from the REST log. */
  readEvents(roomId: string, after: number): Promise<RoomEvent[]>;
  /** The subscription ends; the client stops receiving the room. */
  release(room: RoomSubscription): void;
  /** Every event handed out, for what the client keeps current (unread counts). */
  delivered(event: RoomEvent): void;
  /** A handler threw, or a gap read failed: reported, never lost silently. */
  report(error: unknown): void;
}

/** Counts of what the subscription corrected, for monitoring. */
export interface RoomStats {
  delivered: number;
  /** Events dropped because their seq was already delivered (repeats after a resume). */
  repeats: number;
  /** Events read from the REST log to fill a gap. */
  filled: number;
  resets: number;
}

export class RoomSubscription implements AsyncIterable<RoomEvent> {
  readonly roomId: string;
  readonly stats: RoomStats = { delivered: 0, repeats: 0, filled: 0, resets: 0 };
  /** The members online in the room, from `presence` frames, by user id. */
  readonly online = new Map<string, PresenceFrame['user']>();
  /** The newest seq handed out; undefined until the server said where live events start. */
  private last: number | undefined;
  /** Events that arrived ahead of a missing one (or before the start was known), by seq. */
  private readonly ahead = new Map<number, RoomEvent>();
  /** A reset hook or a gap read in progress: delivery waits for it. */
  private blocked = false;
  /** Whether the first event to arrive may start the subscription (an SSE stream without `since`). */
  private startAnywhere = false;
  private ended = false;
  /** Every caller's handlers: a room is subscribed once per client, heard by all. */
  private readonly handlers: RoomHandlers[] = [];
  private readonly host: RoomHost;
  /** Whether a `for await` reader takes events (only then are they queued). */
  private iterating = false;
  /** Events waiting for an `for await` reader, and the reader waiting for one. */
  private readonly queue: RoomEvent[] = [];
  private wake: (() => void) | undefined;

  constructor(roomId: string, options: RoomOptions, host: RoomHost) {
    this.roomId = roomId;
    this.last = options.since;
    this.handlers.push(options);
    this.host = host;
  }

  /** Adds another caller's handlers (`since` is the first caller's). */
  listen(handlers: RoomHandlers): void {
    this.handlers.push(handlers);
  }

  /** The newest seq handed out, to resume from. */
  get lastSeq(): number | undefined {
    return this.last;
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Stops receiving the room. */
  close(): void {
    if (this.ended) return;
    this.finish();
    this.host.release(this);
  }

  /** The server acknowledged the subscription; `seq` is the room's newest seq then. */
  acknowledged(seq: number): void {
    if (this.last === undefined) this.last = seq;
    this.drain();
  }

  /** The transport cannot say where live events start: the first event does. */
  startAtFirstEvent(): void {
    if (this.last === undefined) this.startAnywhere = true;
  }

  /** An event from the transport, in whatever order and as often as it came. */
  receive(event: RoomEvent): void {
    if (this.ended) return;
    if (this.last !== undefined && event.seq <= this.last) {
      this.stats.repeats++;
      return;
    }
    if (this.last === undefined && this.startAnywhere) {
      this.last = event.seq - 1;
      this.startAnywhere = false;
    }
    this.ahead.set(event.seq, event);
    this.drain();
  }

  /** The server skipped everything up to `seq`: the application reloads history. */
  reset(seq: number): void {
    if (this.ended || (this.last !== undefined && seq <= this.last)) return;
    this.stats.resets++;
    this.last = seq;
    for (const held of this.ahead.keys()) if (held <= seq) this.ahead.delete(held);
    const hooks = this.handlers.flatMap((handlers) => (handlers.onReset ? [handlers.onReset] : []));
    if (hooks.length === 0) return this.drain();
    this.blocked = true;
    Promise.all(hooks.map((hook) => Promise.resolve().then(() => hook({ roomId: this.roomId, seq }))))
      .catch((error) => this.host.report(error))
      .finally(() => {
        this.blocked = false;
        this.drain();
      });
  }

  /** Frames that are not in the log, passed on as they come. */
  typing(frame: TypingFrame): void {
    this.each((handlers) => handlers.onTyping?.(frame));
  }

  read(frame: ReadMarkerFrame): void {
    this.each((handlers) => handlers.onRead?.(frame));
  }

  presence(frame: PresenceFrame): void {
    if (frame.status === 'online') this.online.set(frame.user.id, frame.user);
    else this.online.delete(frame.user.id);
    this.each((handlers) => handlers.onPresence?.(frame));
  }

  /** The server ended the subscription (the user left, or the room is not theirs). */
  end(error: HarkError): void {
    if (this.ended) return;
    this.finish();
    this.host.release(this);
    this.each((handlers) => handlers.onEnd?.(error));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RoomEvent> {
    this.iterating = true;
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Hands out every event that follows the last one; starts a gap read if one is missing. */
  private drain(): void {
    if (this.blocked || this.last === undefined) return;
    for (let next = this.ahead.get(this.last + 1); next; next = this.ahead.get(this.last + 1)) {
      this.ahead.delete(next.seq);
      this.deliver(next);
      if (this.blocked || this.ended) return;
    }
    // What a gap read delivered may also have arrived from the transport meanwhile.
    for (const held of this.ahead.keys()) if (held <= this.last) this.ahead.delete(held);
    if (this.ahead.size > 0) this.fillGap();
  }

  /** Reads the missing events from the REST log, then delivers the ones held. */
  private fillGap(): void {
    this.blocked = true;
    const upTo = Math.min(...this.ahead.keys()) - 1;
    // The log no longer holds the missing events (retention trimmed it): as the
    // server does beyond its replay window, the application reloads.
    const trimmed = () => {
      this.blocked = false;
      this.reset(upTo);
    };
    const read = async () => {
      let failures = 0;
      while (!this.ended && this.last! < upTo) {
        try {
          const events = await this.host.readEvents(this.roomId, this.last!);
          failures = 0;
          const missing = events.filter((event) => event.seq > this.last! && event.seq <= upTo);
          if (missing.length === 0 || missing[0].seq !== this.last! + 1) return trimmed();
          for (const event of missing) {
            if (event.seq !== this.last! + 1) break;
            this.stats.filled++;
            this.deliver(event);
          }
        } catch (error) {
          if (error instanceof HarkError && error.code === 'log_trimmed') return trimmed();
          this.host.report(error);
          await new Promise((resolve) => setTimeout(resolve, Math.min(10_000, 250 * 2 ** failures++)));
        }
      }
      this.blocked = false;
      this.drain();
    };
    read().catch((error) => this.host.report(error));
  }

  private deliver(event: RoomEvent): void {
    this.last = event.seq;
    this.stats.delivered++;
    this.each((handlers) => handlers.onEvent?.(event));
    this.host.delivered(event);
    if (this.iterating) this.queue.push(event);
    this.wake?.();
  }

  private each(call: (handlers: RoomHandlers) => void): void {
    for (const handlers of this.handlers) {
      try {
        call(handlers);
      } catch (error) {
        this.host.report(error);
      }
    }
  }

  private finish(): void {
    this.ended = true;
    this.ahead.clear();
    this.wake?.();
  }
}
