import { PaceNotFoundError, PaceUnsupportedError } from '../errors';

/** The d3 modules the report draws with: scales (and their ticks), line paths, colour schemes. */
export interface D3 {
  scale: typeof import('d3-scale');
  shape: typeof import('d3-shape');
  chromatic: typeof import('d3-scale-chromatic');
}

let loading: Promise<D3> | undefined;

/**
 * Loads d3 (its packages are ES modules only since d3 v7, so not `require`-able from this CommonJS package) with `import()`,
 * which TypeScript's `node16` module setting keeps as a real dynamic import; Node 20 loads ES modules this way
 * from CommonJS. Loaded once, on the first report.
 */
export function loadD3(): Promise<D3> {
  // One after the other: Jest's ES module linker (--experimental-vm-modules) fails on concurrent imports that
  // share dependencies (d3-color).
  const load = async (): Promise<D3> => {
    const scale = await import('d3-scale');
    const shape = await import('d3-shape');
    const chromatic = await import('d3-scale-chromatic');
    return { scale, shape, chromatic };
  };
  loading ??= load().catch((error: unknown) => {
    loading = undefined;
    const { code, message } = error as { code?: string; message?: string };
    if (code === 'ERR_MODULE_NOT_FOUND') {
      throw new PaceNotFoundError(
        `the report's charts need d3, which is not installed (${message}); reinstall pace-peft`,
        { cause: error },
      );
    }
    if (code === 'ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING' || /experimental-vm-modules/.test(message ?? '')) {
      throw new PaceUnsupportedError(
        "this module loader cannot import() ES modules, so not d3, which draws the report's charts: under Jest, run with " +
          "node --experimental-vm-modules, or write the report from a child process ('pace report')",
        { cause: error },
      );
    }
    throw error;
  });
  return loading;
}
