import type http from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Model } from '../../lib';

/** Starts `server` on an ephemeral loopback port; resolves to its base URL. */
export async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A POST of an image to /predict; one that gets no answer within `timeoutMs` fails rather than holding a test. */
export function postImage(base: string, body: Buffer, type = 'image/png', timeoutMs = 30_000): Promise<Response> {
  return fetch(`${base}/predict`, {
    method: 'POST',
    headers: { 'content-type': type },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** `model` as a server sees it, with `forward` in place of its own (gated, counted, failing). */
export function withForward(
  model: Model,
  forward: (input: Parameters<Model['forward']>[0]) => ReturnType<Model['forward']>,
) {
  return new Proxy(model, {
    get: (target, key) => {
      if (key === 'forward') return forward;
      const value: unknown = Reflect.get(target, key, target); // (the model's private fields are the target's)
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
