/**
 * Unread counts per room, kept current from events: loaded once over REST, raised by
 * each message of others that arrives in a subscribed room and by each mention in the
 * user's feed, and read again from the server whenever the user's read marker moves
 * (`feed.read`, on any device) or a room the client does not follow gets messages
 * (`feed.unread`), so that drift never lasts.
 * @module
 */
import type { RoomEvent } from './frames.js';

/** One room's counts, as `GET /v1/users/me/unread` has them. */
export interface RoomCounts {
  unread: number;
  mentions: number;
}

/** What the tracker needs from its client. */
export interface UnreadHost {
  readonly userId: string;
  /** `GET /v1/users/me/unread`. */
  readSummary(): Promise<{ rooms: Array<{ room_id: string; unread_count: number; mention_count: number }> }>;
  /** Whether the client receives this room's events. */
  follows(roomId: string): boolean;
  report(error: unknown): void;
}

export class UnreadCounts {
  private readonly host: UnreadHost;
  private counts = new Map<string, RoomCounts>();
  private readonly listeners = new Set<(counts: UnreadCounts) => void>();
  private reloading: ReturnType<typeof setTimeout> | undefined;

  constructor(host: UnreadHost) {
    this.host = host;
  }

  /** A room's counts (zero when it has nothing unread). */
  room(roomId: string): RoomCounts {
    return this.counts.get(roomId) ?? { unread: 0, mentions: 0 };
  }

  /** Unread messages over every room. */
  get total(): number {
    let total = 0;
    for (const counts of this.counts.values()) total += counts.unread;
    return total;
  }

  /** Mentions over every room. */
  get mentionTotal(): number {
    let total = 0;
    for (const counts of this.counts.values()) total += counts.mentions;
    return total;
  }

  /** Calls `listener` after every change; answers a function that stops it. */
  onChange(listener: (counts: UnreadCounts) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads every count from the server. */
  async load(): Promise<void> {
    const summary = await this.host.readSummary();
    this.counts = new Map(
      summary.rooms.map((room) => [room.room_id, { unread: room.unread_count, mentions: room.mention_count }]),
    );
    this.changed();
  }

  /** Takes an event the client delivered, of a room or of the user's feed. */
  apply(event: RoomEvent): void {
    const me = this.host.userId;
    if (event.room_id === me) {
      const roomId = event.data.room_id as string;
      if (event.type === 'feed.mention') this.add(roomId, 0, 1);
      if (event.type === 'feed.read' || (event.type === 'feed.unread' && !this.host.follows(roomId))) this.reload();
      return;
    }
    const message = event.data;
    const inTimeline = !message.parent_id || message.show_in_room;
    if (event.type === 'message.created' && inTimeline && message.sender && message.sender.id !== me) {
      this.add(event.room_id, 1, 0);
    }
  }

  private add(roomId: string, unread: number, mentions: number): void {
    const counts = this.room(roomId);
    this.counts.set(roomId, { unread: counts.unread + unread, mentions: counts.mentions + mentions });
    this.changed();
  }

  /** Reads the counts again soon: several events in a row cost one request. */
  private reload(): void {
    if (this.reloading) return;
    this.reloading = setTimeout(() => {
      this.reloading = undefined;
      this.load().catch((error) => this.host.report(error));
    }, 100);
  }

  private changed(): void {
    for (const listener of this.listeners) {
      try {
        listener(this);
      } catch (error) {
        this.host.report(error);
      }
    }
  }
}
