// The README's `npm run demo`. For now a smoke job of the native runtime: the doctor report, tensors in and
// out of libtorch, a safetensors round trip and a GEMM timed off the JS thread. Later versions of
// pace-peft turn this into the few-shot fine-tuning demo.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { doctor, formatDoctorReport, loadTensors, measureGemm, saveTensors, tensor } from 'pace-peft';

async function main(): Promise<void> {
  const report = doctor();
  let ticks = 0;
  const timer = setInterval(() => (ticks += 1), 10);
  const gemm = await measureGemm({ size: 512, seconds: 1 });
  clearInterval(timer);
  console.log(formatDoctorReport(report, gemm));
  console.log(`event loop ticked ${ticks} times (every 10 ms) while the GEMMs ran on a worker thread`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'pace-demo-'));
  try {
    using weights = tensor([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    using ids = tensor(new BigInt64Array([7n, 8n]));
    const file = path.join(dir, 'demo.safetensors');
    await saveTensors(file, { weights, ids }, { metadata: { written_by: 'pace-peft demo' } });
    const loaded = await loadTensors(file);
    const back = loaded.tensors.weights;
    console.log(
      `safetensors round trip: ${back} = ${JSON.stringify(back.toArray())}, metadata ${JSON.stringify(loaded.metadata)}`,
    );
    for (const t of Object.values(loaded.tensors)) t.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
