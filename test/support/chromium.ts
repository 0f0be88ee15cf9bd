// Headless Chromium driven over the DevTools protocol through --remote-debugging-pipe (file descriptors 3 and
// 4, messages as JSON ending in a NUL byte), without puppeteer: open a page, collect what it logs and fetches,
// evaluate an expression in it and take a screenshot. Used by test/report.test.ts and scripts/report-picture.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

/** The Chromium executable: $CHROMIUM, else the first of chromium, chromium-browser, google-chrome on the PATH. */
export function findChromium(): string | undefined {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  return ['chromium', 'chromium-browser', 'google-chrome'].find(
    (name) => spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0,
  );
}

/** What a page did and showed. */
export interface PageVisit<T> {
  /** console.error/assert calls, uncaught exceptions and the browser's own error log entries (failed loads...). */
  errors: string[];
  /** URLs the page requested besides itself. */
  requests: string[];
  /** The value of `evaluate`, run after the load event. */
  value: T;
  /** A PNG of `clip` (CSS pixels; default the whole page). */
  screenshot: Buffer;
  /** The page's size in CSS pixels. */
  size: { width: number; height: number };
}

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

class DevTools {
  #next = 0;
  #pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  #listeners: ((m: Message) => void)[] = [];

  constructor(
    private readonly input: Writable,
    output: Readable,
  ) {
    let buffered = Buffer.alloc(0);
    output.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (let end = buffered.indexOf(0); end >= 0; end = buffered.indexOf(0)) {
        const message = JSON.parse(buffered.subarray(0, end).toString('utf8')) as Message;
        buffered = buffered.subarray(end + 1);
        const waiting = message.id === undefined ? undefined : this.#pending.get(message.id);
        if (waiting) {
          this.#pending.delete(message.id!);
          if (message.error) waiting.reject(new Error(message.error.message));
          else waiting.resolve(message);
        } else {
          for (const listener of this.#listeners) listener(message);
        }
      }
    });
  }

  on(listener: (m: Message) => void): void {
    this.#listeners.push(listener);
  }

  async send<R = Record<string, unknown>>(method: string, params: object = {}, sessionId?: string): Promise<R> {
    const id = ++this.#next;
    const reply = new Promise<Message>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.input.write(`${JSON.stringify({ id, method, params, ...(sessionId && { sessionId }) })}\0`);
    return (await reply).result as R;
  }

  failAll(error: Error): void {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

/**
 * Opens `url` in a fresh headless Chromium (own profile, no extensions, no network beyond the page), waits for
 * its load event, evaluates `evaluate` (an expression whose value is returned as JSON) and takes a screenshot.
 */
export async function visitPage<T>(
  url: string,
  options: {
    evaluate: string;
    viewport?: { width: number; height: number };
    clip?: { x: number; y: number; width: number; height: number; scale?: number };
    timeoutMs?: number;
  },
): Promise<PageVisit<T>> {
  const executable = findChromium();
  if (!executable) throw new Error('chromium is not installed (apt-get install chromium)');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pace-chromium-'));
  const args = [
    '--headless',
    '--disable-gpu',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--hide-scrollbars',
    '--remote-debugging-pipe',
    `--user-data-dir=${profile}`,
    ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), // Chromium's sandbox refuses to run as root
    'about:blank',
  ];
  const browser: ChildProcess = spawn(executable, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  browser.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const devtools = new DevTools(browser.stdio[3] as Writable, browser.stdio[4] as Readable);
  const exited = new Promise<never>((_, reject) =>
    browser.once('exit', (code) => {
      const error = new Error(`chromium exited (${code}) before the page was inspected:\n${stderr.slice(-2000)}`);
      devtools.failAll(error);
      reject(error);
    }),
  );
  exited.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`chromium: no answer within ${options.timeoutMs ?? 60000} ms`)),
      options.timeoutMs ?? 60000,
    );
  });
  try {
    return await Promise.race([inspect<T>(devtools, url, options), exited, timeout]);
  } finally {
    clearTimeout(timer);
    if (browser.exitCode === null && browser.signalCode === null) {
      const gone = new Promise((resolve) => browser.once('exit', resolve));
      devtools.send('Browser.close').catch(() => undefined);
      let late: NodeJS.Timeout | undefined;
      const waited = await Promise.race([gone, new Promise((resolve) => (late = setTimeout(resolve, 5000, 'late')))]);
      clearTimeout(late);
      if (waited === 'late') browser.kill('SIGKILL');
    }
    fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

async function inspect<T>(
  devtools: DevTools,
  url: string,
  options: Parameters<typeof visitPage>[1],
): Promise<PageVisit<T>> {
  const { targetId } = await devtools.send<{ targetId: string }>('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await devtools.send<{ sessionId: string }>('Target.attachToTarget', {
    targetId,
    flatten: true,
  });
  const errors: string[] = [];
  const requests: string[] = [];
  let loaded: () => void = () => undefined;
  const load = new Promise<void>((resolve) => (loaded = resolve));
  devtools.on(({ method, params, sessionId: from }) => {
    if (from !== sessionId || !params) return;
    if (method === 'Page.loadEventFired') loaded();
    if (method === 'Runtime.consoleAPICalled' && (params.type === 'error' || params.type === 'assert')) {
      errors.push(`console.${params.type}: ${JSON.stringify(params.args)}`);
    }
    if (method === 'Runtime.exceptionThrown') errors.push(`exception: ${JSON.stringify(params.exceptionDetails)}`);
    const entry = params.entry as { level?: string; text?: string; url?: string } | undefined;
    if (method === 'Log.entryAdded' && entry?.level === 'error') errors.push(`log: ${entry.text} ${entry.url ?? ''}`);
    const request = params.request as { url?: string } | undefined;
    if (method === 'Network.requestWillBeSent' && request?.url && request.url !== url) requests.push(request.url);
  });
  for (const domain of ['Page', 'Runtime', 'Log', 'Network']) await devtools.send(`${domain}.enable`, {}, sessionId);
  const viewport = options.viewport ?? { width: 1280, height: 900 };
  await devtools.send(
    'Emulation.setDeviceMetricsOverride',
    { ...viewport, deviceScaleFactor: 1, mobile: false },
    sessionId,
  );
  await devtools.send('Page.navigate', { url }, sessionId);
  await load;
  const evaluated = await devtools.send<{ result: { value: T }; exceptionDetails?: unknown }>(
    'Runtime.evaluate',
    { expression: options.evaluate, returnByValue: true },
    sessionId,
  );
  if (evaluated.exceptionDetails) errors.push(`evaluate: ${JSON.stringify(evaluated.exceptionDetails)}`);
  const metrics = await devtools.send<{ cssContentSize: { width: number; height: number } }>(
    'Page.getLayoutMetrics',
    {},
    sessionId,
  );
  const size = { width: Math.ceil(metrics.cssContentSize.width), height: Math.ceil(metrics.cssContentSize.height) };
  const clip = options.clip ?? { x: 0, y: 0, ...size };
  const shot = await devtools.send<{ data: string }>(
    'Page.captureScreenshot',
    { format: 'png', captureBeyondViewport: true, clip: { scale: 1, ...clip } },
    sessionId,
  );
  return { errors, requests, value: evaluated.result.value, screenshot: Buffer.from(shot.data, 'base64'), size };
}
