/**
 * Hark's SDK: `connect({ url, getToken })` for the real-time side, and the generated
 * REST client alongside (`client.rest` with `operations`).
 * @module
 */
export { connect, HarkClient, type ConnectOptions, type ConnectionState, type WebSocketConstructor, type WebSocketLike } from './client.js';
export { HarkError } from './errors.js';
export { CLIENT_OPS, SERVER_OPS, type Draft, type Message, type RoomEvent, type User } from './frames.js';
export type * from './frames.js';
export { afterClose, type ReconnectOptions, type TokenReason } from './reconnect.js';
export { operations, restClient, type RestClient } from './rest.js';
export { RoomSubscription, type RoomHandlers, type RoomOptions, type RoomStats } from './room.js';
export { UnreadCounts, type RoomCounts } from './unread.js';
