#pragma once
#include <functional>

namespace pace::addon {

// Runs `task` on one of the process's compute threads, with the process's intra-op thread count, and returns once
// it has ended, rethrowing what it threw. The calling libuv thread only waits.
//
// Why: libgomp gives every thread that runs a parallel region a team of its own and keeps it for the thread's life.
// Promises ran on whichever of libuv's threads took them, so a process soon held several teams, more threads than
// CPUs, and libgomp then stops spinning between regions: each of a step's thousands of regions waited for a
// wake-up. Here work goes to the first idle compute thread, so work awaited one job after another always lands on
// the same thread and team; jobs that overlap get further threads, which end after a few idle seconds and take
// their teams with them. Every job runs with the same thread count, so results do not depend on timing.
void runOnComputeThread(const std::function<void()>& task);

}  // namespace pace::addon
