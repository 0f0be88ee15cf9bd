/** Jest: TypeScript tests through ts-jest, native suites in band (npm test passes --runInBand). */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  testTimeout: 120000,
  globalSetup: '<rootDir>/test/support/clean-environment.js',
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
