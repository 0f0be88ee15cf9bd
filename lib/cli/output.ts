/**
 * The CLI's standard output and error when their reader may go away (`pace fit ... | head -1`): a write that fails
 * (EPIPE once the pipe's reader has exited; ENOSPC on a full disk) would otherwise be an unhandled 'error' event, or
 * an exception from a file stream, that ends the process, and with it a running training. Instead the stream is
 * taken as closed and later output to it is dropped; the command carries on and exits as it would have.
 */
const closed = new Set<NodeJS.WriteStream>();
const guarded = new Set<NodeJS.WriteStream>();

function markClosed(stream: NodeJS.WriteStream, error: NodeJS.ErrnoException): void {
  if (closed.has(stream)) return;
  closed.add(stream);
  // a reader that left is the normal end of `| head`; any other failure is worth a word where it can still go
  if (error.code !== 'EPIPE' && stream === process.stdout && !closed.has(process.stderr)) {
    write(process.stderr, `pace: standard output failed (${error.message}); further output is dropped\n`);
  }
}

/** Installs the handlers on stdout and stderr (once per stream; later calls do nothing). */
export function dropOutputWhenClosed(): void {
  for (const stream of [process.stdout, process.stderr]) {
    if (guarded.has(stream)) continue;
    guarded.add(stream);
    stream.on('error', (error: NodeJS.ErrnoException) => markClosed(stream, error));
  }
}

function write(stream: NodeJS.WriteStream, text: string): void {
  dropOutputWhenClosed();
  if (closed.has(stream) || stream.destroyed) return;
  try {
    stream.write(text);
  } catch (error) {
    markClosed(stream, error as NodeJS.ErrnoException);
  }
}

/** A line on stdout, dropped once stdout is closed. */
export function out(text: string): void {
  write(process.stdout, `${text}\n`);
}

/** Text on stderr (a message, a warning), dropped once stderr is closed. */
export function err(text: string): void {
  write(process.stderr, text);
}

/**
 * A message for the terminal: control characters other than newline and tab written as `\xNN`, so that text a
 * file's author chose (a tensor's name, a list's line, a config's key) echoed in an error cannot drive the terminal.
 */
export function shownOnTerminal(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
