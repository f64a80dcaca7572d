/**
 * Real servers for the SDK tests: a database of its own, two `hark serve` instances
 * on it, and a TCP proxy in front that a client connects through, as it would through
 * a load balancer: each new connection goes to the next instance that is up, and the
 * test can cut every connection, refuse WebSocket upgrades, kill and restart an
 * instance, and terminate the instances' LISTEN connections in PostgreSQL.
 *
 * Run as a program (`node --import tsx test/fleet.ts`), it takes the same commands as
 * JSON lines on stdin and answers each on stdout, so that the Python SDK's tests
 * drive the very same fleet.
 *
 * Settings: HARK_BIN (default target/debug/hark), HARK_ADMIN_URL (an admin URL of the
 * PostgreSQL server; default the local one on 5432).
 * @module
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const binary = process.env.HARK_BIN ?? `${root}target/debug/hark`;
const adminUrl = process.env.HARK_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface FleetOptions {
  instances?: number;
  /** Settings for every instance (HARK_ACCESS_TOKEN_TTL_SECONDS, HARK_REPLAY_WINDOW, …). */
  env?: Record<string, string>;
}

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  return port;
}

function psql(url: string, sql: string): string {
  return execFileSync('psql', ['-qtAX', url, '-c', sql], { encoding: 'utf8' });
}

class Instance {
  process: ChildProcess | undefined;
  log = '';
  constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {}

  get up(): boolean {
    return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  async start(): Promise<void> {
    this.process = spawn(binary, ['serve'], {
      env: { ...process.env, ...this.env, HARK_BIND: `127.0.0.1:${this.port}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (chunk: Buffer) => (this.log = (this.log + chunk.toString()).slice(-20_000));
    this.process.stdout!.on('data', keep);
    this.process.stderr!.on('data', keep);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (!this.up) throw new Error(`hark serve exited:\n${this.log}`);
      try {
        if ((await fetch(`http://127.0.0.1:${this.port}/readyz`)).ok) return;
      } catch {
        // Not listening yet.
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`hark serve did not become ready:\n${this.log}`);
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    if (!this.up) return;
    const exited = once(this.process!, 'exit');
    this.process!.kill(signal);
    await exited;
  }
}

export class Fleet {
  readonly database: string;
  readonly databaseUrl: string;
  readonly instances: Instance[] = [];
  /** The proxy's URL: what clients connect to. */
  url = '';
  /** While true, the proxy closes connections that ask for a WebSocket upgrade. */
  refuseWebSockets = false;
  private proxy: net.Server | undefined;
  private readonly connections = new Set<net.Socket>();
  private next = 0;

  private constructor() {
    this.database = `hark_sdk_${Date.now()}_${randomBytes(3).toString('hex')}`;
    this.databaseUrl = adminUrl.replace(/\/[^/]*$/, `/${this.database}`);
  }

  static async start(options: FleetOptions = {}): Promise<Fleet> {
    const fleet = new Fleet();
    psql(adminUrl, `create database ${fleet.database}`);
    const env = {
      DATABASE_URL: fleet.databaseUrl,
      HARK_JWT_SECRET: randomBytes(32).toString('base64'),
      HARK_TENANT_CREATION: 'open',
      HARK_LOG_FORMAT: 'text',
      RUST_LOG: 'warn',
      HARK_SEND_BURST: '100000',
      HARK_SEND_RATE_PER_SECOND: '100000',
      HARK_WS_OPS_BURST: '100000',
      HARK_WS_OPS_PER_SECOND: '100000',
      ...options.env,
    };
    for (let index = 0; index < (options.instances ?? 2); index++) {
      const instance = new Instance(await freePort(), env);
      await instance.start();
      fleet.instances.push(instance);
    }
    await fleet.startProxy();
    return fleet;
  }

  /** Kills an instance at once (SIGKILL: no goodbye to its clients) or stops it (SIGTERM: 1012). */
  async kill(index: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.instances[index].stop(signal);
  }

  async restart(index: number): Promise<void> {
    await this.instances[index].stop('SIGKILL');
    await this.instances[index].start();
  }

  /** Closes every connection through the proxy, as a network failure would. */
  cut(): number {
    const count = this.connections.size;
    for (const socket of this.connections) socket.destroy();
    this.connections.clear();
    return count;
  }

  /** Runs a statement on the fleet's database as its owner; answers what psql printed. */
  sql(statement: string): string {
    return psql(this.databaseUrl, statement);
  }

  /** Terminates every instance's LISTEN connection (the instances reconnect and read the log). */
  terminateListeners(): number {
    const answer = psql(
      adminUrl,
      `select count(pg_terminate_backend(pid)) from pg_stat_activity
       where datname = '${this.database}' and (query ilike 'LISTEN%' or query ilike 'UNLISTEN%')`,
    );
    return Number(answer.trim());
  }

  async stop(): Promise<void> {
    this.cut();
    this.proxy?.close();
    for (const instance of this.instances) await instance.stop('SIGKILL');
    psql(adminUrl, `drop database if exists ${this.database} with (force)`);
  }

  private async startProxy(): Promise<void> {
    this.proxy = net.createServer((client) => this.route(client));
    this.proxy.listen(0, '127.0.0.1');
    await once(this.proxy, 'listening');
    this.url = `http://127.0.0.1:${(this.proxy.address() as net.AddressInfo).port}`;
  }

  /** Sends a client's connection to the next instance that is up. */
  private route(client: net.Socket): void {
    this.connections.add(client);
    client.on('close', () => this.connections.delete(client));
    client.on('error', () => client.destroy());
    client.once('data', (first) => {
      if (this.refuseWebSockets && /^upgrade:\s*websocket/im.test(first.toString('latin1'))) {
        client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      const live = this.instances.filter((instance) => instance.up);
      if (live.length === 0) return client.destroy();
      const instance = live[this.next++ % live.length];
      const upstream = net.connect(instance.port, '127.0.0.1');
      this.connections.add(upstream);
      upstream.on('close', () => {
        this.connections.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(first);
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }
}

/** A tenant with open registration and its owner's session, created over REST. */
export async function createTenant(url: string): Promise<{ slug: string; owner: any }> {
  const slug = `sdk-${Date.now()}-${randomBytes(2).toString('hex')}`;
  const response = await fetch(`${url}/v1/tenants`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ slug, name: 'SDK test', registration_open: true, owner: { username: 'owner', password: PASSWORD } }),
  });
  if (!response.ok) throw new Error(`create tenant: ${response.status} ${await response.text()}`);
  return { slug, owner: (await response.json()).session };
}

export const PASSWORD = 'correct horse battery staple';

// As a program: one JSON command per line on stdin, one JSON answer per line on stdout.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const options = JSON.parse(process.argv[2] ?? '{}') as FleetOptions;
  const fleet = await Fleet.start(options);
  console.log(JSON.stringify({ url: fleet.url, database: fleet.database }));
  const commands: Record<string, (argument: any) => unknown> = {
    kill: (index) => fleet.kill(index),
    term: (index) => fleet.kill(index, 'SIGTERM'),
    restart: (index) => fleet.restart(index),
    cut: () => fleet.cut(),
    terminate_listeners: () => fleet.terminateListeners(),
    sql: (statement) => fleet.sql(statement),
    refuse_websockets: (refuse) => (fleet.refuseWebSockets = Boolean(refuse)),
  };
  for await (const line of createInterface({ input: process.stdin })) {
    const { command, argument } = JSON.parse(line);
    if (command === 'stop') break;
    try {
      console.log(JSON.stringify({ ok: true, result: (await commands[command](argument)) ?? null }));
    } catch (error) {
      console.log(JSON.stringify({ ok: false, error: String(error) }));
    }
  }
  await fleet.stop();
  // Standard input stays referenced after the last line: leave explicitly.
  process.exit(0);
}
