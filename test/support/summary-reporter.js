// Prints every skipped test by name (each says why in its title), then jest's totals as one plain line
// ("jest: N passed, N failed, N skipped") that CI can read. With -t (a name filter) the tests it left out are
// not listed.
class SummaryReporter {
  constructor(globalConfig) {
    this.filtered = Boolean(globalConfig.testNamePattern);
  }

  onRunComplete(_contexts, results) {
    for (const suite of this.filtered ? [] : results.testResults) {
      for (const test of suite.testResults) {
        if (test.status === 'pending' || test.status === 'todo') process.stdout.write(`\nskipped: ${test.fullName}`);
      }
    }
    const skipped = results.numPendingTests + results.numTodoTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`\njest: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
