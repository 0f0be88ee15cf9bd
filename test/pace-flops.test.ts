// The PACE step's matrix arithmetic (bench/pace-flops.ts), the numerator of the device benchmark's bf16 floor.
import { resolveModelName } from '../lib';
import { vitPaceStepFlops } from '../bench/pace-flops';

const vitB = resolveModelName('vit_base_patch16_224')!;

test("ViT-B/16's PACE step at batch 64: the stacked form's and the least formulation's counts, written out", () => {
  const flops = vitPaceStepFlops(vitB, 64, 10);
  // Σ in·out of a block: qkv 768·2304, proj 768·768, fc1 768·3072, fc2 3072·768; 12 blocks; 128 rows of 197 tokens.
  const perBlock = 768 * 2304 + 768 * 768 + 768 * 3072 + 3072 * 768;
  expect(perBlock).toBe(7_077_888);
  const rows = 128 * 197;
  const firstQkvInputGradient = rows * 768 * 2304; // ×4 stacked, ×2 least: not computed, nothing before trains
  const attention = 12 * 128 * (4 + 8) * 197 * 197 * 768; // QKᵀ and AV, forward and twice that backward
  const patch = 64 * 2 * 196 * 768 * 768; // forward only, on the 64 images before the batch is doubled
  const adapters = 12 * perBlock * 10 * 6;
  const common = attention + patch + adapters;
  expect(flops.stacked).toBe(10 * rows * 12 * perBlock - 4 * firstQkvInputGradient + common);
  expect(flops.minimal).toBe(6 * rows * 12 * perBlock - 2 * firstQkvInputGradient + common);
  // ≈ 340.7 and 208.3 GFLOP per image: the old hard-coded 172 undercounted even the least formulation.
  expect(flops.stacked / 64 / 1e9).toBeCloseTo(340.7, 1);
  expect(flops.minimal / 64 / 1e9).toBeCloseTo(208.3, 1);
});

test("the least count is three forward passes of both copies, against timm's 17.6 GMACs per image", () => {
  // timm lists vit_base_patch16_224 at 17.6 GMACs per 224² image. A training step's products are three times the
  // forward's (forward, input gradient, weight gradient), for both copies; the frozen patch embedding runs forward
  // only and the head is not counted, which keeps the count within 2 % of that estimate.
  const perImage = vitPaceStepFlops(vitB, 1, 0).minimal;
  const estimate = 2 * 3 * 2 * 17.6e9;
  expect(Math.abs(perImage - estimate) / estimate).toBeLessThan(0.02);
});

test('other models are refused rather than counted as ViTs', () => {
  expect(() => vitPaceStepFlops(resolveModelName('swin_base_patch4_window7_224')!, 64, 10)).toThrow(/counts ViTs/);
});
