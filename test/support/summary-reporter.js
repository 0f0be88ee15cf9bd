const path = require('node:path');

// Prints every skipped test by name (each says why in its title), the slowest suites (npm test should stay
// within about 15 minutes on the 2-core development machine), then jest's totals as one plain line
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
    const seconds = (suite) => (suite.perfStats.end - suite.perfStats.start) / 1000;
    const slowest = [...results.testResults].sort((a, b) => seconds(b) - seconds(a)).slice(0, 8);
    if (slowest.length > 1) {
      const total = results.testResults.reduce((sum, suite) => sum + seconds(suite), 0);
      const named = slowest.map((suite) => `${path.basename(suite.testFilePath)} ${seconds(suite).toFixed(0)} s`);
      process.stdout.write(`\nslowest suites (of ${total.toFixed(0)} s): ${named.join(', ')}`);
    }
    const skipped = results.numPendingTests + results.numTodoTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    process.stdout.write(`\njest: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
