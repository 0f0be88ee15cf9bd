#!/usr/bin/env node
import { parseArgs } from 'node:util';

import { doctor, formatDoctorReport, measureGemm } from './doctor';

const usage = `Usage: pace <command> [options]

Commands:
  doctor [--json] [--gemm] [--device cpu|cuda]
      Report the libtorch version, CUDA, the BLAS in use and thread settings.
      --gemm measures float32 GEMM throughput for about two seconds.`;

async function runDoctor(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      gemm: { type: 'boolean', default: false },
      device: { type: 'string', default: 'cpu' },
    },
  });
  const report = doctor();
  const gemm = values.gemm ? await measureGemm({ size: 1024, seconds: 2, device: values.device }) : undefined;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ ...report, gemm }, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatDoctorReport(report, gemm)}\n`);
  }
  return report.warnings.length > 0 && report.blas.kind === 'reference' ? 1 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'doctor':
      return runDoctor(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${usage}\n`);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`pace: unknown command '${command}'\n\n${usage}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`pace: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
