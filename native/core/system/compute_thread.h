#pragma once
// Where native work runs: on the process's one compute thread when it is free, else where it was called, on one
// CPU thread.
//
// Under libgomp each thread that starts a parallel region keeps a team of OpenMP threads for as long as it lives,
// and once a process holds more OpenMP threads than CPUs none of them spins between regions: each of a training
// step's thousands of regions then waits for a futex wake-up (a ViT-S bf16 step took 20 % longer, bench/RESULTS.md).
// Our Promises start on whichever of libuv's long-lived worker threads takes them, so a few calls left several
// teams behind for good. Work now runs on one long-lived thread with the process's intra-op threads. Work that
// arrives while that thread is busy (another model's, a data job) runs where it is, on one CPU thread, so it makes
// no team and never waits for other work. (A thread per job would end its team with it, but libtorch's thread
// set-up costs 8-20 ms on each new thread.)
#include <functional>

namespace pace {

// Runs `work` to its end, on the compute thread if it is free, else here; rethrows what it threw.
void runOnComputeThread(const std::function<void()>& work);

}  // namespace pace
