/**
 * What the connection does when its socket closes, by close code (the protocol's
 * table in `openapi/websocket.md`), and the backoff between attempts.
 * @module
 */
import { HarkError } from './errors.js';

/** Why the SDK asks the application for a token. */
export type TokenReason = 'connect' | 'expiring' | 'rejected';

/** How reconnecting waits; every delay is in milliseconds. */
export interface ReconnectOptions {
  /** The first wait after a failure (default 250). */
  initialDelayMs?: number;
  /** The longest wait (default 10,000). */
  maxDelayMs?: number;
  /** The shortest wait after the server closed for rate limiting, 4008 (default 5,000). */
  rateLimitedDelayMs?: number;
}

/** The answer to a close: try again after a delay (with a new token or not), or stop. */
export type CloseDecision =
  | { retry: true; delayMs: number; token: TokenReason; countsAsFailure: boolean }
  | { retry: false; error: HarkError };

/**
 * Decides what follows a close with `code` after `failures` failed attempts in a row.
 * Delays are jittered so that the clients of a restarted instance do not all come
 * back at the same moment.
 */
export function afterClose(
  code: number,
  failures: number,
  options: ReconnectOptions = {},
  random: () => number = Math.random,
): CloseDecision {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 10_000;
  const backoff = () => {
    const ceiling = Math.min(max, initial * 2 ** failures);
    return ceiling / 2 + random() * (ceiling / 2);
  };
  switch (code) {
    // The instance is restarting: any other one takes the connection at once.
    case 1012:
      return { retry: true, delayMs: random() * 250, token: 'connect', countsAsFailure: false };
    // Too slow to keep up: resuming by seq catches up, so come back at once.
    case 4009:
      return { retry: true, delayMs: random() * 100, token: 'connect', countsAsFailure: false };
    case 4001:
      return { retry: true, delayMs: failures === 0 ? 0 : backoff(), token: 'rejected', countsAsFailure: true };
    case 4008:
      return {
        retry: true,
        delayMs: Math.max(options.rateLimitedDelayMs ?? 5_000, backoff()),
        token: 'connect',
        countsAsFailure: true,
      };
    case 4003:
      return { retry: false, error: new HarkError('forbidden', 'The server refused this connection (4003)', { closeCode: code }) };
    case 4400:
      return {
        retry: false,
        error: new HarkError('invalid_frame', 'The server closed the connection for malformed frames (4400)', { closeCode: code }),
      };
    default:
      return { retry: true, delayMs: backoff(), token: 'connect', countsAsFailure: true };
  }
}

/** The claims of an access token (not verified: the server does that), or undefined for one that is not a JWT. */
export function tokenClaims(token: string): { sub?: string; exp?: number } | undefined {
  try {
    const payload = token.split('.')[1];
    return JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/')));
  } catch {
    return undefined;
  }
}

/** When an access token expires (ms since the epoch), read from its `exp` claim. */
export function tokenExpiry(token: string): number | undefined {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === 'number' ? exp * 1000 : undefined;
}

/**
 * How long to wait before re-authenticating with a fresh token: a fifth of the
 * token's remaining life before it ends, at most a minute before, so that a refresh
 * that fails once still has time to succeed.
 */
export function refreshDelay(token: string, now: number = Date.now()): number | undefined {
  const expiry = tokenExpiry(token);
  if (expiry === undefined) return undefined;
  const remaining = expiry - now;
  return Math.max(0, remaining - Math.min(60_000, remaining / 5));
}
