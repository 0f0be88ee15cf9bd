#pragma once
// The core's surface for the addon: everything the bindings call, in one place. The addon includes this and
// nothing else from native/core, so what the core offers to JavaScript is visible here.
#include "data/interpolation.h"           // the resampling of crops and RandAugment
#include "data/mixup.h"                   // mixup / CutMix and soft targets
#include "data/packed_images.h"           // images of their own sizes in one tensor
#include "data/pil_convert.h"             // Pillow's CMYK to RGB of decoded pixels
#include "data/pil_resize.h"              // Pillow's bicubic resize of stored pixels
#include "data/rand_augment.h"            // RandAugment
#include "data/random_erasing.h"          // RandomErasing of normalised images
#include "data/resized_crop.h"            // random resized crops
#include "data/transforms.h"              // image preparation and augmentation
#include "distributed/gathered_values.h"  // values every rank contributes
#include "distributed/group.h"            // process groups for data-parallel training
#include "errors.h"                       // pace::Error and its codes
#include "io/checkpoint.h"                // training checkpoints (CRC-checked)
#include "io/safetensors.h"               // tensor files
#include "models/backbone.h"              // the model interface
#include "models/family_registry.h"       // building a backbone by family name
#include "models/weights.h"               // loading and saving timm weights
#include "peft/cross_entropy.h"           // the loss for hard or soft targets
#include "peft/pace_linear.h"             // the fused PACE linear's strategy
#include "peft/setup.h"                   // adapters: add, load, save, merge
#include "system/cuda_memory.h"           // the CUDA allocator's counters and cache
#include "system/devices.h"               // devices by name
#include "system/doctor.h"                // environment report and GEMM measurement
#include "system/profiler.h"              // Chrome traces of profiled steps
#include "system/threads.h"               // thread settings
#include "tensor/cpu_cache.h"             // the CPU allocator cache
#include "tensor/dtype.h"                 // dtype names
#include "tensor/fingerprint.h"           // a cheap identity of a tensor's contents
#include "tensor/fused_epilogues.h"       // element-wise work folded into the kernel before it
#include "tensor/host_memory.h"           // tensors over JavaScript memory
#include "tensor/precision.h"             // fp32 / tf32 / bf16 arithmetic
#include "train/graph_capture.h"          // whole-step CUDA graphs, and when none is busy
#include "train/schedule.h"               // the cosine schedule
#include "train/trainer.h"                // training, evaluation
