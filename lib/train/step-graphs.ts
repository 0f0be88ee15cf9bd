// Whole-step CUDA graph modes, as fit, trainStep and profileSteps take them (native/core/train/step_graphs.h):
// `auto` captures and replays where the build and device can, `off` never does, and `rehearse` runs the graph
// path's buffers and bookkeeping with an eager stand-in for the capture (for tests, on any device).
import { z } from 'zod';

export const StepGraphModeSchema = z.enum(['auto', 'off', 'rehearse']);
export type StepGraphMode = z.infer<typeof StepGraphModeSchema>;
