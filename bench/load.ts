import { connect, Socket } from 'node:net';
import { encodeHaproxyHello, encodeNotify, FrameReader, FrameType, SpoeIp } from '../libs/spoe/src/protocol';

/** What a load run measured. */
export interface LoadResult {
  readonly acks: number;
  readonly seconds: number;
  readonly framesPerSecond: number;
}

/**
 * Plays HAProxy 3.1+: `connections` SPOP connections, each keeping `window` NOTIFY in flight (HAProxy pipelines up
 * to 20 per connection), for `durationMs`. Each NOTIFY is `check-client-ip` with an IPv4 and three ~50-byte strings.
 */
export async function runLoad(target: { port: number }, connections: number, window: number, durationMs: number): Promise<LoadResult> {
  const sockets = await Promise.all(Array.from({ length: connections }, () => open(target.port)));
  const args: Array<[string, string | SpoeIp]> = [
    ['ip', SpoeIp.parse('192.0.2.44')],
    ['ua', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101'],
    ['host', 'shop.example.com.internal-load-balancer.example.org'],
    ['path', '/api/v2/catalog/items/1234567890?expand=price,stock'],
  ];
  let acks = 0;
  let stop = false;
  const started = performance.now();
  const finished = Promise.all(
    sockets.map(
      ({ socket, reader }) =>
        new Promise<void>((resolve) => {
          // One pre-encoded NOTIFY per in-flight slot (distinct stream-ids, like HAProxy 3.1+): the generator must
          // cost far less than the agent it measures.
          const slots = new Map<number, Buffer>();
          for (let i = 0; i < window; i++) slots.set(2 * i + 1, encodeNotify(16380, 2 * i + 1, 1, [{ name: 'check-client-ip', args }]));
          let inFlight = 0;
          const send = (ids: number[]): void => {
            inFlight += ids.length;
            socket.write(ids.length === 1 ? slots.get(ids[0])! : Buffer.concat(ids.map((id) => slots.get(id)!)));
          };
          socket.once('close', () => resolve());
          socket.on('data', (chunk: Buffer) => {
            reader.push(chunk);
            const done: number[] = [];
            for (let f = reader.next(); f; f = reader.next()) if (f.type === FrameType.Ack) done.push(f.streamId as number);
            acks += done.length;
            inFlight -= done.length;
            if (!stop && done.length > 0) send(done);
            else if (inFlight === 0) {
              socket.destroy();
              resolve();
            }
          });
          send([...slots.keys()]);
        }),
    ),
  );
  await new Promise((resolve) => setTimeout(resolve, durationMs));
  stop = true;
  const seconds = (performance.now() - started) / 1000;
  const result = { acks, seconds, framesPerSecond: acks / seconds };
  const drained = setTimeout(() => sockets.forEach(({ socket }) => socket.destroy()), 1000);
  await finished;
  clearTimeout(drained);
  return result;
}

function open(port: number): Promise<{ socket: Socket; reader: FrameReader }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const reader = new FrameReader(16380);
    socket.setNoDelay(true);
    socket.once('error', reject);
    socket.once('connect', () => socket.write(encodeHaproxyHello({ supportedVersions: '2.0', maxFrameSize: 16380, capabilities: ['pipelining'], healthcheck: false, engineId: 'bench' })));
    const onHello = (chunk: Buffer): void => {
      reader.push(chunk);
      const frame = reader.next();
      if (!frame) return;
      socket.off('data', onHello);
      if (frame.type !== FrameType.AgentHello) reject(new Error(`HELLO refused (frame type ${frame.type})`));
      else resolve({ socket, reader });
    };
    socket.on('data', onHello);
  });
}
