// Preloaded into a CLI child by a test (`node --require signal-at-line.js dist/cli.js ...`): the child sends itself
// PACE_TEST_SIGNAL right after it writes a line of stdout matching PACE_TEST_SIGNAL_AT (a regular expression), once.
// A stop that waits for the child's own progress, not for the test to notice it: the child cannot run on past that
// line first, however fast or loaded the machine is. stdout to a pipe or a file is written synchronously, so the
// line is out before the signal. With SIGSTOP the child freezes right there, until the test sends SIGCONT; any
// other signal is handled as one from outside would be, at the child's next turn of its event loop.
//
// Preloaded through NODE_OPTIONS into a process tree instead (a sweep and its runs), with PACE_TEST_SIGNAL_COUNT_DIR
// (an empty folder) and PACE_TEST_SIGNAL_NTH: only the n-th process of the tree to write such a line signals
// itself (each one that writes it leaves a file there), and the variables stay for the processes started later.
'use strict';
const fs = require('fs');
const path = require('path');

const pattern = new RegExp(process.env.PACE_TEST_SIGNAL_AT, 'm');
const signal = process.env.PACE_TEST_SIGNAL;
const countDir = process.env.PACE_TEST_SIGNAL_COUNT_DIR;
const nth = Number(process.env.PACE_TEST_SIGNAL_NTH || 1);
if (!countDir) {
  // Not passed on to the processes the child starts (pace launch's ranks, for one).
  delete process.env.PACE_TEST_SIGNAL_AT;
  delete process.env.PACE_TEST_SIGNAL;
}
/** Whether this process is the n-th of its tree to write the line (always, without a count folder). */
const isNth = () => {
  if (!countDir) return true;
  fs.writeFileSync(path.join(countDir, String(process.pid)), '');
  return fs.readdirSync(countDir).length === nth;
};
let sent = false;
const write = process.stdout.write;
process.stdout.write = function (chunk, ...rest) {
  const result = write.call(this, chunk, ...rest);
  if (!sent && pattern.test(String(chunk))) {
    sent = true;
    if (isNth()) process.kill(process.pid, signal);
  }
  return result;
};
