import fs from 'node:fs';
import net from 'node:net';

/**
 * Listens on `port` (0: one the kernel picks) on every address, as c10d's store binds it ([::] and 0.0.0.0; 0.0.0.0
 * alone where there is no IPv6), and closes again: the port, or undefined if it is taken.
 */
async function listenAndClose(port: number): Promise<number | undefined> {
  const attempt = (options: net.ListenOptions) =>
    new Promise<number | NodeJS.ErrnoException>((resolve) => {
      const server = net.createServer();
      server.once('error', (error: NodeJS.ErrnoException) => resolve(error));
      server.listen(options, () => {
        const bound = (server.address() as net.AddressInfo).port;
        server.close(() => resolve(bound));
      });
    });
  let result = await attempt({ port, host: '::', ipv6Only: false });
  if (typeof result !== 'number' && result.code !== 'EADDRINUSE') result = await attempt({ port, host: '0.0.0.0' });
  return typeof result === 'number' ? result : undefined;
}

/** The kernel's range of ports for outgoing connections and listen(0): [low, high]. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    return [Number(low), Number(high)];
  } catch {
    return [32768, 60999];
  }
}

/**
 * A port nothing listens on now, for a process that will bind it soon (rank 0's rendezvous store). Drawn below the
 * kernel's ephemeral range where there is room, so that no outgoing connection or listen(0) is handed it
 * meanwhile; only a process binding that very port by number could take it before the child does (see
 * {@link portTakenIn}).
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  for (let attempt = 0; low - floor > 1000 && attempt < 50; attempt++) {
    const port = await listenAndClose(floor + Math.floor(Math.random() * (low - floor)));
    if (port !== undefined) return port;
  }
  const port = await listenAndClose(0);
  if (port === undefined) throw new Error('no free port to listen on');
  return port;
}

/** Whether `stderr` says the rendezvous store could not bind `port` (taken after {@link freePort} found it free). */
export function portTakenIn(stderr: string, port: number): boolean {
  return new RegExp(`failed to bind to \\S*:${port} \\(errno: 98|EADDRINUSE`).test(stderr);
}

/** Thrown by a test body that found its port taken: {@link onFreePort} runs the body again on another. */
export class PortTaken extends Error {}

/** Runs `body` on a port from {@link freePort}, again on another (three tries in all) if it throws PortTaken. */
export async function onFreePort<T>(body: (port: number) => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    const port = await freePort();
    try {
      return await body(port);
    } catch (error) {
      if (!(error instanceof PortTaken) || tries === 3) throw error;
      console.warn(`port ${port} was taken before rank 0 bound it: trying another`);
    }
  }
}
