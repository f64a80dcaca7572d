/**
 * The one error type of the SDK: a refusal of the server (with its stable code) or a
 * failure of the connection.
 * @module
 */

/** Codes of the SDK's own errors, apart from the server's. */
export const CONNECTION_LOST = 'connection_lost';
export const TIMEOUT = 'timeout';
export const CLOSED = 'closed';

/** An error with the server's stable `code` (see the REST API's errors) or one of the SDK's. */
export class HarkError extends Error {
  /** The stable code: the server's (`not_a_member`, `rate_limited`, …) or `connection_lost`, `timeout`, `closed`. */
  readonly code: string;
  /** The input field at fault, for input errors. */
  readonly field?: string;
  /** The HTTP status of a REST refusal. */
  readonly status?: number;
  /** The WebSocket close code that ended the connection, for `closed`. */
  readonly closeCode?: number;

  constructor(code: string, message: string, extra: { field?: string; status?: number; closeCode?: number } = {}) {
    super(message);
    this.name = 'HarkError';
    this.code = code;
    this.field = extra.field;
    this.status = extra.status;
    this.closeCode = extra.closeCode;
  }

  /**
   * Whether trying again later, unchanged, may succeed: the connection failed, the
   * server was busy or restarting, or a rate limit refused it. An input or permission
   * error never is.
   */
  get transient(): boolean {
    if ([CONNECTION_LOST, TIMEOUT, 'rate_limited', 'conflict_retry', 'unavailable'].includes(this.code)) return true;
    return this.status !== undefined && (this.status >= 500 || this.status === 429 || this.status === 408);
  }
}
