/**
 * HAProxy's stats socket (the CLI, `stats socket <path> level admin`): one command at a time, and the answers tests
 * read — `show stat`, `show servers state`, a server's status.
 */
import { existsSync } from 'node:fs';
import { connect, Socket } from 'node:net';
import { waitFor } from './wait';

/**
 * Sends one command to an HAProxy stats socket (Unix path) and resolves with the whole answer (HAProxy closes the
 * connection after a command in non-interactive mode).
 */
export function haproxyCli(socketPath: string, command: string): Promise<string> {
  const timeoutMs = 3000;
  return new Promise((resolveCli, reject) => {
    if (!existsSync(socketPath)) {
      reject(new Error(`stats socket ${socketPath} does not exist`));
      return;
    }
    const socket: Socket = connect({ path: socketPath });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`stats socket ${socketPath}: no answer to "${command}" within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(`${command}\n`));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolveCli(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** `show stat` as rows keyed by the CSV header (pxname, svname, status, check_status, …). */
export async function showStat(socketPath: string): Promise<Array<Record<string, string>>> {
  const text = await haproxyCli(socketPath, 'show stat');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const header = lines.shift();
  if (!header?.startsWith('# ')) throw new Error(`unexpected show stat output: ${text.slice(0, 200)}`);
  const columns = header.slice(2).split(',');
  return lines.map((line) => {
    const values = line.split(',');
    const row: Record<string, string> = {};
    columns.forEach((name, i) => {
      if (name) row[name] = values[i] ?? '';
    });
    return row;
  });
}

/** One line of `show servers state`. srv_op_state: 0 stopped (DOWN), 1 starting, 2 running (UP), 3 stopping. */
export interface ServerState {
  readonly backend: string;
  readonly server: string;
  readonly address: string;
  readonly opState: number;
  readonly adminState: number;
  readonly checkStatus: number;
  readonly raw: Readonly<Record<string, string>>;
}

/** `show servers state [backend]`, parsed. */
export async function showServersState(socketPath: string, backend?: string): Promise<ServerState[]> {
  const text = await haproxyCli(socketPath, backend ? `show servers state ${backend}` : 'show servers state');
  const lines = text.split('\n').filter((l) => l.length > 0);
  const headerIndex = lines.findIndex((l) => l.startsWith('# '));
  if (headerIndex < 0) throw new Error(`unexpected show servers state output: ${text.slice(0, 200)}`);
  const columns = lines[headerIndex].slice(2).split(' ');
  return lines.slice(headerIndex + 1).map((line) => {
    const values = line.split(' ');
    const raw: Record<string, string> = {};
    columns.forEach((name, i) => (raw[name] = values[i] ?? ''));
    return {
      backend: raw.be_name,
      server: raw.srv_name,
      address: raw.srv_addr,
      opState: Number(raw.srv_op_state),
      adminState: Number(raw.srv_admin_state),
      checkStatus: Number(raw.srv_check_status),
      raw,
    };
  });
}

/** The `status` column of `show stat` for one server ("UP", "DOWN", "UP 1/2", "no check", …); undefined if absent. */
export async function serverStatus(socketPath: string, backend: string, server: string): Promise<string | undefined> {
  const rows = await showStat(socketPath);
  return rows.find((r) => r.pxname === backend && r.svname === server)?.status;
}

/** Waits until the server's `show stat` status is exactly `status` (transitional "UP 1/2" etc. do not count). */
export async function waitForServerStatus(
  socketPath: string,
  backend: string,
  server: string,
  status: 'UP' | 'DOWN',
  timeoutMs = 10_000,
): Promise<void> {
  let last: string | undefined;
  try {
    await waitFor(
      `server ${backend}/${server} to be ${status}`,
      async () => {
        last = await serverStatus(socketPath, backend, server);
        return last === status;
      },
      timeoutMs,
      50,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; last status: ${last}`, { cause: error });
  }
}
