// README's examples are what users copy first. Each ```ts block is type-checked against the types the package
// publishes (dist/index.d.ts, reached by the package's own name as an installed project reaches it), and each
// `pace` command line's flags must be ones the command parses: a renamed option or flag, a changed return shape or
// a removed export breaks this test rather than the user's script. Each command's usage text names exactly the
// flags it parses, and its JSON configs are valid ones.
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

import { commands } from '../lib/cli/commands';
import { parseRunConfig } from '../lib/cli/config';
import { parseSweepConfig } from '../lib/sweep/config';
import { SweepPlan } from '../lib/sweep/plan';
import { makeTempDir } from './support/paths';

const root = path.join(__dirname, '..');

/** The ```<language> blocks of a Markdown text, with the line each starts on. */
function codeBlocks(markdown: string, language: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = [];
  let open: { line: number; lines: string[] } | undefined;
  markdown.split('\n').forEach((text, index) => {
    if (open === undefined && text.trimEnd() === '```' + language) open = { line: index + 2, lines: [] };
    else if (open !== undefined && /^```\s*$/.test(text)) {
      blocks.push({ line: open.line, code: open.lines.join('\n') });
      open = undefined;
    } else open?.lines.push(text);
  });
  return blocks;
}

// The values the examples take from the reader's own code, declared with the types the package gives them.
const givens = `
import type { Model, Tensor, Trainer, TrainerOptions, TensorDataset } from 'pace-peft';
declare global {
  const images: Tensor;
  const targets: Tensor;
  const labels: Tensor;
  const model: Model;
  const trainer: Trainer;
  const options: TrainerOptions;
  const train: TensorDataset;
  const validation: TensorDataset;
  const test: TensorDataset;
  const signal: AbortSignal;
  const controller: AbortController;
}
export {};
`;

/** Type errors of each block, as "README.md:<line of the block's line>: message". */
function typeErrors(blocks: { line: number; code: string }[]): string[] {
  const folder = path.join(root, '.readme-examples'); // inside the package, so 'pace-peft' resolves to itself
  const files = new Map<string, string>([[path.join(folder, 'givens.d.mts'), givens]]);
  blocks.forEach((block, i) => files.set(path.join(folder, `block-${i}.mts`), block.code));
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2022.d.ts', 'lib.esnext.disposable.d.ts'],
    module: ts.ModuleKind.Node16,
    moduleResolution: ts.ModuleResolutionKind.Node16,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ['node'],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (file) => files.has(file) || ts.sys.fileExists(file);
  host.readFile = (file) => files.get(file) ?? readFile(file);
  host.getSourceFile = (file, language, onError) => {
    const text = files.get(file);
    return text === undefined ? getSourceFile(file, language, onError) : ts.createSourceFile(file, text, language);
  };
  const program = ts.createProgram([...files.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    const file = diagnostic.file;
    const match = file && /block-(\d+)\.mts$/.exec(file.fileName);
    if (!file || diagnostic.start === undefined || !match) return `${file?.fileName ?? 'the program'}: ${message}`;
    const { line } = file.getLineAndCharacterOfPosition(diagnostic.start);
    return `README.md:${blocks[Number(match[1])].line + line}: ${message}`;
  });
}

const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

describe("README's TypeScript examples", () => {
  const blocks = codeBlocks(readme, 'ts');

  test('are found, each importing from the package by name', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    for (const block of blocks) expect(block.code).toMatch(/from 'pace-peft'/);
  });

  test('type-check against the published types', () => {
    expect(fs.existsSync(path.join(root, 'dist', 'index.d.ts'))).toBe(true);
    expect(typeErrors(blocks)).toEqual([]);
  }, 120_000);

  test('a wrong option in an example is caught, with its README line', () => {
    const wrong = [
      { line: 500, code: "import { createModel } from 'pace-peft';\nawait createModel('vit', { numClass: 3 });" },
    ];
    const errors = typeErrors(wrong);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(
      /^README\.md:501: Object literal may only specify known properties, but 'numClass' does not exist/,
    );
  }, 120_000);
});

/** The `--flags` a command line names, up to a comment; a ` -- ` hands the rest to another command. */
function commandLines(text: string): { command: string; flags: string[]; line: string }[] {
  return text.split(' -- ').flatMap((part) => {
    const words = /^\s*(?:npx )?pace ([a-z]+)\b(.*)$/.exec(part.split(' # ')[0]);
    if (!words) return [];
    return [
      {
        command: words[1],
        flags: [...words[2].matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]),
        line: text,
      },
    ];
  });
}

describe("README's command lines and each command's usage", () => {
  // Lines of its shell blocks and reference, and `pace ...` spans in its prose.
  const spans = [...readme.matchAll(/`(pace [^`]*)`/g)].map((match) => match[1]);
  const named = [...readme.split('\n'), ...spans].flatMap(commandLines);
  const parses = (command: string, flag: string) => flag === 'help' || Object.hasOwn(commands[command].flags, flag);

  test('name only flags their command parses', () => {
    expect(named.length).toBeGreaterThanOrEqual(30);
    const unknown = named.flatMap(({ command, flags, line }) => {
      if (!Object.hasOwn(commands, command)) return [`'pace ${command}' is no command: ${line}`];
      return flags.filter((flag) => !parses(command, flag)).map((flag) => `pace ${command} --${flag}: ${line}`);
    });
    expect(unknown).toEqual([]);
  });

  test.each(Object.keys(commands))("pace %s's usage names exactly the flags it parses", (name) => {
    const inUsage = commandLines(`pace ${name} ${commands[name].usage.replace(/\n/g, ' ')}`)[0].flags;
    expect([...new Set(inUsage)].sort()).toEqual(Object.keys(commands[name].flags).sort());
  });

  test('a flag no command parses is caught', () => {
    const [line] = commandLines('pace fit --config run.json --epoch 3   # one epoch');
    expect(line.flags.filter((flag) => !Object.hasOwn(commands.fit.flags, flag))).toEqual(['epoch']);
  });
});

describe("README's JSON configs", () => {
  const temp = makeTempDir('readme-configs');
  afterAll(() => temp.cleanup());
  const blocks = codeBlocks(readme, 'json').map(({ line, code }) => ({
    line,
    // A section (`"data": {...}`) is read as the object holding it.
    value: JSON.parse(code.trimStart().startsWith('{') ? code : `{${code}}`) as Record<string, unknown>,
  }));
  const runs = blocks.filter(({ value }) => 'model' in value);
  const sweeps = blocks.filter(({ value }) => 'grid' in value || 'list' in value);
  const fragments = blocks.filter((block) => !runs.includes(block) && !sweeps.includes(block));

  test('are found: a run config, sweeps and a data section', () => {
    expect([runs.length, sweeps.length, fragments.length]).toEqual([1, 2, 1]);
  });

  test('the run config, and it with the data section put in, are valid run configs', () => {
    const run = runs[0].value;
    expect(() => parseRunConfig(run, temp.dir, `README.md:${runs[0].line}`)).not.toThrow();
    const withData = { ...run, ...fragments[0].value };
    expect(() => parseRunConfig(withData, temp.dir, `README.md:${fragments[0].line}`)).not.toThrow();
    expect(() => parseRunConfig({ ...run, fit: { epochs: 3, batchsize: 8 } }, temp.dir, 'a typo')).toThrow(/batchsize/);
  });

  test('the sweeps are valid sweep configs (a base file named as the run config above)', () => {
    fs.writeFileSync(path.join(temp.dir, 'run.json'), JSON.stringify(runs[0].value));
    for (const { line, value } of sweeps) {
      // Planned as pace sweep plans them, each point's run config checked.
      expect(() => new SweepPlan(parseSweepConfig(value, temp.dir, `README.md:${line}`), temp.dir)).not.toThrow();
    }
  });
});
