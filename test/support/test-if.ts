/**
 * `test` when `ok`; otherwise `test.skip`, with `why` in the title, so that the summary reporter's list of skipped
 * tests says why each did not run.
 */
export function testIf(
  ok: boolean,
  why: string,
): (name: string, body: jest.ProvidesCallback, timeout?: number) => void {
  return ok ? test : (name, body, timeout) => test.skip(`${name} (skipped: ${why})`, body, timeout);
}

/** `describe` when `ok`; otherwise `describe.skip`, with `why` in the title (as testIf). */
export function describeIf(ok: boolean, why: string): (name: string, body: () => void) => void {
  return ok ? describe : (name, body) => describe.skip(`${name} (skipped: ${why})`, body);
}
