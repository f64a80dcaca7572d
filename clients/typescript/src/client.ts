/**
 * The client: one WebSocket per user session (or SSE streams where WebSockets fail)
 * that authenticates with the first frame (browsers cannot set headers), refreshes
 * its token on the open socket before it expires, reconnects with jittered backoff
 * as the close code says, and resubscribes every room from the last seq it delivered.
 * The rooms themselves keep the order (room.ts); this module keeps the connection.
 * @module
 */
import { CLOSED, CONNECTION_LOST, HarkError, TIMEOUT } from './errors.js';
import type { ClientFrame, Draft, Message, RoomEvent, ServerFrame } from './frames.js';
import { afterClose, refreshDelay, tokenClaims, tokenExpiry, type ReconnectOptions, type TokenReason } from './reconnect.js';
import { call, operations, restClient, type RestClient } from './rest.js';
import { RoomSubscription, type RoomOptions } from './room.js';
import { SseStreams } from './sse.js';
import { UnreadCounts } from './unread.js';

/** The part of the WebSocket API the client uses: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectOptions {
  /** The server's base URL, `https://chat.example.com` (the socket goes to `wss://…/v1/ws`). */
  url: string;
  /**
   * Answers an access token of the user. Called to connect (`connect`), shortly
   * before the token in use expires (`expiring`: answer a fresh one), and when the
   * server refused the last one (`rejected`). Calls never overlap.
   */
  getToken: (context: { reason: TokenReason }) => string | Promise<string>;
  /** The WebSocket class; the global one by default (browsers, Node.js 22). Pass `ws` on Node.js 20. */
  WebSocket?: WebSocketConstructor;
  fetch?: typeof fetch;
  /** `auto` (default) uses SSE when the server answers HTTP but WebSockets do not open. */
  transport?: 'auto' | 'websocket' | 'sse';
  reconnect?: ReconnectOptions;
  /** How long a frame waits for its answer (default 10 s). */
  ackTimeoutMs?: number;
  /** How often the client checks the connection with a `ping` (default 25 s). */
  pingIntervalMs?: number;
}

/** `connecting` until first connected, `reconnecting` between connections, `closed` for good. */
export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

interface Pending {
  resolve: (result: any) => void;
  reject: (error: HarkError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Connects to Hark; the client starts connecting at once. */
export function connect(options: ConnectOptions): HarkClient {
  return new HarkClient(options);
}

export class HarkClient {
  /** The generated REST client, with this client's server and tokens, for any operation. */
  readonly rest: RestClient;
  private readonly options: ConnectOptions;
  private readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  private readonly rooms = new Map<string, RoomSubscription>();
  private readonly listeners = { state: new Set<(state: ConnectionState) => void>(), error: new Set<(error: unknown) => void>() };
  private currentState: ConnectionState = 'connecting';
  /** `sse` once the client fell back to SSE (for its whole life). */
  private transport: 'websocket' | 'sse';
  private readonly sse: SseStreams;
  private socket: WebSocketLike | undefined;
  private readonly pending = new Map<string, Pending>();
  private refs = 0;
  /** Failed attempts since the last successful authentication: the backoff's exponent. */
  private failures = 0;
  /**
   * Sockets in a row that never opened: three, with HTTP answering, mean that something
   * on the way blocks WebSockets (one or two may be an instance going away).
   */
  private unopened = 0;
  private stopped = false;
  private token: string | undefined;
  /** A `getToken` call in progress, shared by every caller so that calls never overlap. */
  private tokenCall: Promise<string> | undefined;
  private tokenRejected = false;
  private nextReason: TokenReason = 'connect';
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private pinger: ReturnType<typeof setInterval> | undefined;
  private refresher: ReturnType<typeof setTimeout> | undefined;
  private readonly typingSent = new Map<string, number>();
  private unread: UnreadCounts | undefined;
  private waiters: Array<() => void> = [];

  constructor(options: ConnectOptions) {
    this.options = options;
    this.baseUrl = options.url.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.transport = options.transport === 'sse' ? 'sse' : 'websocket';
    this.rest = restClient(this.baseUrl, () => this.restToken(), this.fetchImpl);
    this.sse = new SseStreams({
      baseUrl: this.baseUrl,
      fetch: this.fetchImpl,
      reconnect: options.reconnect ?? {},
      token: (reason) => this.getToken(reason),
      streamPath: (room) => (room.roomId === this.userId ? '/v1/users/me/events' : `/v1/rooms/${room.roomId}/events`),
      newestSeq: async (room) =>
        room.roomId === this.userId
          ? undefined
          : (await this.callRest((client) => operations.getRoom({ client, path: { room_id: room.roomId } }))).last_seq,
      report: (error) => this.report(error),
    });
    if (this.transport === 'sse') this.useSse();
    else void this.open();
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The signed-in user's id (the token's subject), once a token was answered. */
  get userId(): string {
    const subject = this.token ? tokenClaims(this.token)?.sub : undefined;
    if (!subject) throw new HarkError('not_connected', 'No token yet: await client.ready() first');
    return subject;
  }

  /** `websocket`, or `sse` after falling back. */
  get transportKind(): 'websocket' | 'sse' {
    return this.transport;
  }

  on(event: 'state', listener: (state: ConnectionState) => void): () => void;
  on(event: 'error', listener: (error: unknown) => void): () => void;
  on(event: 'state' | 'error', listener: (value: any) => void): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Resolves once connected (at once when already), rejects when closed for good. */
  ready(): Promise<void> {
    if (this.currentState === 'connected') return Promise.resolve();
    if (this.currentState === 'closed') return Promise.reject(new HarkError(CLOSED, 'The client is closed'));
    return new Promise((resolve, reject) => {
      this.waiters.push(() => (this.currentState === 'connected' ? resolve() : reject(new HarkError(CLOSED, 'The client is closed'))));
    });
  }

  /**
   * Receives a room's events: each once, in seq order, across reconnects (resumed
   * from the last one delivered). A room is subscribed once per client: a second call
   * adds its handlers to the first subscription.
   */
  room(roomId: string, options: RoomOptions = {}): RoomSubscription {
    const existing = this.rooms.get(roomId);
    if (existing) {
      existing.listen(options);
      return existing;
    }
    const room = new RoomSubscription(roomId, options, {
      readEvents: (id, after) => this.readEvents(id, after),
      release: (released) => this.release(released),
      delivered: (event) => this.unread?.apply(event),
      report: (error) => this.report(error),
    });
    this.rooms.set(roomId, room);
    if (this.transport === 'sse') this.sse.open(room);
    else if (this.currentState === 'connected') this.subscribe(room);
    return room;
  }

  /** Receives the user's own feed (rooms added and removed, unread, mentions, …) like a room. */
  async feed(options: RoomOptions = {}): Promise<RoomSubscription> {
    await this.ready();
    return this.room(this.userId, options);
  }

  /** Unread counts per room, kept current from events (subscribes to the feed). */
  async unreadCounts(): Promise<UnreadCounts> {
    if (this.unread) return this.unread;
    await this.ready();
    const unread = new UnreadCounts({
      userId: this.userId,
      readSummary: () => this.callRest((client) => operations.getUnreadCounts({ client })),
      follows: (roomId) => this.rooms.has(roomId),
      report: (error) => this.report(error),
    });
    this.unread = unread;
    await this.feed();
    await unread.load();
    return unread;
  }

  /**
   * Sends a message, over the socket when it is up and over REST otherwise, with one
   * `client_id` for every attempt: a retry after a lost answer gets the message
   * already written, never a second one. Transient failures are retried (`retries`
   * times, 5 by default) with backoff; a refusal throws at once.
   */
  async send(roomId: string, draft: Draft, options: { retries?: number } = {}): Promise<Message> {
    const message = { ...draft, client_id: draft.client_id ?? randomId() };
    const retries = options.retries ?? 5;
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.transport === 'websocket' && this.currentState === 'connected') {
          return await this.request({ op: 'send', room_id: roomId, ...message });
        }
        return (await this.callRest((client) =>
          operations.sendMessage({ client, path: { room_id: roomId }, body: message as any }),
        )) as Message;
      } catch (error) {
        if (!(error instanceof HarkError) || !error.transient || attempt >= retries) throw error;
        await this.sleep(Math.min(5_000, 200 * 2 ** attempt) * (0.5 + Math.random() / 2));
      }
    }
  }

  /**
   * Tells the room the user is typing; call it on every keystroke: at most one signal
   * per room every 3 seconds goes out (the server shows one for 5). WebSocket only.
   */
  typing(roomId: string): boolean {
    const now = Date.now();
    if (this.transport !== 'websocket' || this.currentState !== 'connected') return false;
    if (now - (this.typingSent.get(roomId) ?? 0) < 3_000) return false;
    this.typingSent.set(roomId, now);
    this.write({ op: 'typing', room_id: roomId });
    return true;
  }

  /** Moves the user's read marker in a room to `seq` (never backwards). */
  async markRead(roomId: string, seq: number): Promise<{ room_id: string; last_read_seq: number; unread_count: number }> {
    if (this.transport === 'websocket' && this.currentState === 'connected') {
      return this.request({ op: 'read', room_id: roomId, seq });
    }
    return (await this.callRest((client) =>
      operations.markRead({ client, path: { room_id: roomId }, body: { seq } }),
    )) as any;
  }

  /** Closes the connection and every subscription for good. */
  close(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.stopTimers();
    this.sse.closeAll();
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000);
    this.failPending();
    for (const room of [...this.rooms.values()]) room.close();
    this.setState('closed');
  }

  /** Sends a frame and answers its `ack` result; an `error` frame throws its code. */
  private request(frame: ClientFrame): Promise<any> {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) {
      return Promise.reject(new HarkError(CONNECTION_LOST, 'Not connected'));
    }
    const ref = `${++this.refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new HarkError(TIMEOUT, `No answer to ${frame.op} within ${this.ackTimeout} ms`));
      }, this.ackTimeout);
      this.pending.set(ref, { resolve, reject, timer });
      socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  private write(frame: ClientFrame): void {
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify(frame));
  }

  private get ackTimeout(): number {
    return this.options.ackTimeoutMs ?? 10_000;
  }

  /** Asks the application for a token; concurrent askers share one call. */
  private getToken(reason: TokenReason): Promise<string> {
    this.tokenCall ??= Promise.resolve()
      .then(() => this.options.getToken({ reason }))
      .then((token) => {
        this.token = token;
        this.tokenRejected = false;
        return token;
      })
      .finally(() => (this.tokenCall = undefined));
    return this.tokenCall;
  }

  /** The token for a REST call: the one in use unless it was refused or is about to expire. */
  private restToken(): Promise<string> {
    const expiry = this.token ? tokenExpiry(this.token) : undefined;
    if (this.token && !this.tokenRejected && (expiry === undefined || expiry - Date.now() > 5_000)) {
      return Promise.resolve(this.token);
    }
    return this.getToken(this.tokenRejected ? 'rejected' : this.token ? 'expiring' : 'connect');
  }

  private callRest<T>(operation: (client: RestClient) => Promise<{ data?: T; error?: unknown; response?: Response }>): Promise<T> {
    return call(() => operation(this.rest), () => (this.tokenRejected = true));
  }

  private async readEvents(roomId: string, after: number): Promise<RoomEvent[]> {
    const page =
      roomId === this.userId
        ? await this.callRest((client) => operations.listMyEvents({ client, query: { after, limit: 1000 } }))
        : await this.callRest((client) =>
            operations.listRoomEvents({ client, path: { room_id: roomId }, query: { after, limit: 1000 } }),
          );
    return page.items as unknown as RoomEvent[];
  }

  /** Opens a socket: the token goes in the first frame, never in the URL. */
  private async open(): Promise<void> {
    if (this.stopped) return;
    let token: string;
    try {
      token = await this.getToken(this.nextReason);
    } catch (error) {
      this.report(error);
      return this.retry(afterClose(1006, this.failures++, this.options.reconnect));
    }
    this.nextReason = 'connect';
    if (this.stopped) return;
    const WebSocketClass = this.options.WebSocket ?? (globalThis as any).WebSocket;
    if (!WebSocketClass) throw new HarkError('no_websocket', 'No WebSocket class: pass one (for example `ws`) as `WebSocket`');
    const socket: WebSocketLike = new WebSocketClass(`${this.baseUrl.replace(/^http/, 'ws')}/v1/ws`);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.unopened = 0;
      void this.authenticate(socket, token);
    };
    socket.onmessage = (message) => this.receive(socket, message.data);
    socket.onclose = (closed) => this.closed(socket, closed.code, opened);
    socket.onerror = () => undefined;
  }

  private async authenticate(socket: WebSocketLike, token: string): Promise<void> {
    try {
      await this.request({ op: 'auth', token });
    } catch (error) {
      // The server closes with 4001 after refusing a token; a lost answer closes too.
      if (this.socket === socket) this.drop(socket, error instanceof HarkError && error.code === TIMEOUT ? 1006 : 4001);
      return;
    }
    if (this.socket !== socket) return;
    this.failures = 0;
    this.scheduleRefresh(token);
    this.startPing(socket);
    this.setState('connected');
    for (const room of this.rooms.values()) this.subscribe(room);
  }

  private subscribe(room: RoomSubscription): void {
    this.request({ op: 'subscribe', room_id: room.roomId, since: room.lastSeq })
      .then((result) => room.acknowledged(result.seq))
      .catch((error: HarkError) => {
        // A lost connection resubscribes after reconnecting; anything else is final.
        if ([CONNECTION_LOST, TIMEOUT, 'already_subscribed'].includes(error.code)) return;
        if (error.code === 'rate_limited' || error.transient) {
          this.later(() => this.currentState === 'connected' && !room.closed && this.subscribe(room), 1_000);
          return;
        }
        room.end(error);
      });
  }

  private release(room: RoomSubscription): void {
    if (this.rooms.get(room.roomId) !== room) return;
    this.rooms.delete(room.roomId);
    if (this.transport === 'sse') this.sse.close(room);
    else if (this.currentState === 'connected') this.request({ op: 'unsubscribe', room_id: room.roomId }).catch(() => undefined);
  }

  private receive(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(String(data));
    } catch (error) {
      return this.report(error);
    }
    switch (frame.op) {
      case 'ack':
      case 'error':
      case 'pong': {
        const pending = frame.ref ? this.pending.get(frame.ref) : undefined;
        if (!pending) {
          if (frame.op === 'error') this.report(new HarkError(frame.code, frame.message, { field: frame.field }));
          return;
        }
        this.pending.delete(frame.ref!);
        clearTimeout(pending.timer);
        if (frame.op === 'error') pending.reject(new HarkError(frame.code, frame.message, { field: frame.field }));
        else pending.resolve(frame.op === 'ack' ? frame.result : undefined);
        return;
      }
      case 'event': {
        const { op: _op, ...event } = frame;
        return this.rooms.get(frame.room_id)?.receive(event as RoomEvent);
      }
      case 'reset':
        return this.rooms.get(frame.room_id)?.reset(frame.seq);
      case 'typing':
        return this.rooms.get(frame.room_id)?.typing(frame);
      case 'read':
        return this.rooms.get(frame.room_id)?.read(frame);
      case 'presence':
        return this.rooms.get(frame.room_id)?.presence(frame);
      case 'unsubscribed':
        return this.rooms.get(frame.room_id)?.end(new HarkError(frame.reason, 'The server ended the subscription'));
    }
  }

  /** The socket closed (or was given up on): decides by close code what follows. */
  private closed(socket: WebSocketLike, code: number, opened: boolean): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    this.stopTimers();
    this.failPending();
    if (this.stopped) return;
    if (!opened) this.unopened++;
    if (this.options.transport !== 'websocket' && this.unopened >= 3) {
      void this.probeHttp().then((answers) => {
        if (this.stopped) return;
        if (answers) this.useSse();
        else this.retry(afterClose(code, this.failures++, this.options.reconnect));
      });
      this.setState('reconnecting');
      return;
    }
    const decision = afterClose(code, this.failures, this.options.reconnect);
    if (decision.retry && decision.countsAsFailure) this.failures++;
    this.retry(decision);
  }

  private retry(decision: ReturnType<typeof afterClose>): void {
    if (!decision.retry) {
      this.report(decision.error);
      this.close();
      return;
    }
    this.nextReason = decision.token;
    this.setState('reconnecting');
    this.later(() => void this.open(), decision.delayMs);
  }

  /** Whether the server answers plain HTTP (WebSockets failing while it does means a proxy blocks them). */
  private async probeHttp(): Promise<boolean> {
    try {
      const response = await this.fetchImpl(`${this.baseUrl}/healthz`);
      return response.ok;
    } catch {
      return false;
    }
  }

  /** Falls back to SSE streams for every subscription, for the client's life. */
  private useSse(): void {
    this.transport = 'sse';
    for (const room of this.rooms.values()) this.sse.open(room);
    // SSE streams connect one by one and reconnect on their own: the client is as
    // connected as HTTP lets it be once a token is at hand.
    this.getToken('connect')
      .then(() => this.setState('connected'))
      .catch((error) => this.report(error));
  }

  /** Gives up on a socket that stopped answering, without waiting for its close handshake. */
  private drop(socket: WebSocketLike, code: number): void {
    socket.onclose = null;
    socket.onmessage = null;
    try {
      socket.close();
    } catch {
      // A socket that never opened cannot close; it is dropped all the same.
    }
    this.closed(socket, code, true);
  }

  private startPing(socket: WebSocketLike): void {
    this.pinger = setInterval(() => {
      this.request({ op: 'ping' }).catch((error: HarkError) => {
        if (error.code === TIMEOUT && this.socket === socket) this.drop(socket, 1006);
      });
    }, this.options.pingIntervalMs ?? 25_000);
  }

  /** Re-authenticates on the open socket before the token expires. */
  private scheduleRefresh(token: string): void {
    clearTimeout(this.refresher);
    const delay = refreshDelay(token);
    if (delay === undefined) return;
    this.refresher = setTimeout(async () => {
      const socket = this.socket;
      try {
        const fresh = await this.getToken('expiring');
        if (this.socket !== socket) return;
        await this.request({ op: 'auth', token: fresh });
        this.scheduleRefresh(fresh);
      } catch (error) {
        this.report(error);
        // Tried again shortly; if the token runs out meanwhile, the server closes with
        // 4001 and the reconnect asks for a new one.
        if (this.socket === socket) this.refresher = setTimeout(() => this.scheduleRefresh(token), 2_000);
      }
    }, delay);
  }

  private stopTimers(): void {
    clearInterval(this.pinger);
    clearTimeout(this.refresher);
    this.pinger = undefined;
    this.refresher = undefined;
  }

  private failPending(): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new HarkError(CONNECTION_LOST, 'The connection closed before the answer came'));
    }
    this.pending.clear();
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state) return;
    if (this.currentState === 'closed') return;
    this.currentState = state;
    for (const listener of this.listeners.state) listener(state);
    if (state === 'connected' || state === 'closed') for (const wake of this.waiters.splice(0)) wake();
  }

  private report(error: unknown): void {
    for (const listener of this.listeners.error) listener(error);
  }

  private later(task: () => void, delayMs: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      task();
    }, delayMs);
    this.timers.add(timer);
  }

  private sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.later(resolve, delayMs));
  }
}

function randomId(): string {
  return globalThis.crypto.randomUUID();
}
