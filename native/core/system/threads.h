#pragma once
// How many threads one tensor operation may use (libtorch's intra-op threads, which also drive OpenBLAS).
//
// Under OpenMP that number belongs to each OS thread: at::set_num_threads on one thread does not reach a
// thread created later, such as the libuv workers our Promises run on, which start from the OpenMP default
// (one here). So the process-wide choice is kept here and every thread that runs tensor work applies it first.
// Inter-op threads only serve libtorch's at::launch/JIT forks, which pace-peft does not use.
namespace pace {

// CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota when one is set.
int availableCpus();

// PACE_NUM_THREADS, else OMP_NUM_THREADS, else availableCpus().
int defaultThreads();

// Sets the process-wide intra-op thread count (1..1024) and applies it to the calling thread.
void setThreads(int intraOp);
int configuredThreads();

// Applies the process-wide count to the calling thread if it differs (cheap; call before tensor work).
void applyThreads();

}  // namespace pace
