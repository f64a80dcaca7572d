/**
 * The REST client generated from `openapi/openapi.yaml` (@hey-api/openapi-ts), as
 * the SDK exposes it: `client.rest` is configured with the server's URL and the same
 * tokens as the connection, to pass to any generated operation.
 * @module
 */
import { createClient, createConfig, type Client } from './generated/rest/client/index.js';
import { HarkError, CONNECTION_LOST } from './errors.js';

export * as operations from './generated/rest/sdk.gen.js';
export type * from './generated/rest/types.gen.js';
export type { Client as RestClient };

/** A generated client for `baseUrl` whose requests carry the token `token` answers. */
export function restClient(baseUrl: string, token: () => Promise<string>, fetchImpl?: typeof fetch): Client {
  return createClient(createConfig({ baseUrl, auth: token, fetch: fetchImpl }));
}

/** What every generated operation answers when it does not throw. */
interface RestResult<T> {
  data?: T;
  error?: unknown;
  response?: Response;
}

/**
 * Runs a generated operation and answers its data, or throws a `HarkError` with the
 * server's code (or `connection_lost` when no answer came). A 401 is tried once more
 * after `onRejected` (a new token).
 */
export async function call<T>(operation: () => Promise<RestResult<T>>, onRejected: () => void): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    let result: RestResult<T>;
    try {
      result = await operation();
    } catch (error) {
      throw new HarkError(CONNECTION_LOST, `The request failed: ${(error as Error).message}`);
    }
    const status = result.response?.status ?? 0;
    if (result.response?.ok) return result.data as T;
    if (status === 401 && attempt === 0) {
      onRejected();
      continue;
    }
    const body = (result.error ?? {}) as { code?: string; message?: string; field?: string };
    throw new HarkError(body.code ?? (status === 0 ? CONNECTION_LOST : 'unavailable'), body.message ?? `HTTP ${status}`, {
      status,
      field: body.field,
    });
  }
}
