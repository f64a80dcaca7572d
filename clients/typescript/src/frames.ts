/**
 * The WebSocket protocol's frames, as the SDK reads and writes them. The interfaces
 * are generated from `openapi/asyncapi.yaml` (scripts/frames.mjs); this module names
 * the unions and the ops, which `test/frames.test.ts` compares with that document.
 * @module
 */
import type {
  AckFrame,
  AuthFrame,
  DeleteFrame,
  EditFrame,
  ErrorFrame,
  EventFrame,
  PingFrame,
  PongFrame,
  PresenceFrame,
  ReactFrame,
  ReadFrame,
  ReadMarkerFrame,
  ResetFrame,
  SendFrame,
  SubscribeFrame,
  TypingFrame,
  TypingSignalFrame,
  UnsubscribedFrame,
  UnsubscribeFrame,
  UserRef,
} from './generated/frames.js';

export type {
  AckFrame,
  ErrorFrame,
  EventFrame,
  PresenceFrame,
  ReadMarkerFrame,
  ResetFrame,
  SendFrame,
  TypingFrame,
  UnsubscribedFrame,
  UserRef,
};

/** A frame the client sends. */
export type ClientFrame =
  | AuthFrame
  | SubscribeFrame
  | UnsubscribeFrame
  | SendFrame
  | EditFrame
  | DeleteFrame
  | ReactFrame
  | ReadFrame
  | TypingSignalFrame
  | PingFrame;

/** A frame the server sends. */
export type ServerFrame =
  | AckFrame
  | ErrorFrame
  | EventFrame
  | ResetFrame
  | TypingFrame
  | ReadMarkerFrame
  | PresenceFrame
  | UnsubscribedFrame
  | PongFrame;

/** The ops of the client's frames: one each, as the union above has them. */
export const CLIENT_OPS = [
  'auth',
  'subscribe',
  'unsubscribe',
  'send',
  'edit',
  'delete',
  'react',
  'read',
  'typing',
  'ping',
] as const satisfies readonly ClientFrame['op'][];

/** The ops of the server's frames the SDK handles. */
export const SERVER_OPS = [
  'ack',
  'error',
  'event',
  'reset',
  'typing',
  'read',
  'presence',
  'unsubscribed',
  'pong',
] as const satisfies readonly ServerFrame['op'][];

/** An event of a room's log or of the user's feed, as `event` frames, SSE and the REST log carry it. */
export type RoomEvent = Omit<EventFrame, 'op' | 'data'> & { data: Record<string, any> };

/** The fields of a message to send (the `send` frame without its op, ref and room). */
export type Draft = Omit<SendFrame, 'op' | 'ref' | 'room_id'>;

/** A message as the REST API and the acks show it. */
export type Message = Record<string, any> & { id: string; room_id: string; seq: number };

/** A user as frames name them. */
export type User = UserRef;
