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

// Sets the process-wide intra-op thread count (1..1024); threads that do tensor work take it up through
// applyThreads() before their next job.
void setThreads(int intraOp);
int configuredThreads();

// Applies the process-wide count to the calling thread if it differs, or if another thread changed libtorch's
// process-wide state since (cheap; call before tensor work).
void applyThreads();

// Makes the calling thread run its tensor operations alone, with no OpenMP team of its own: for threads that
// only copy or wait, such as the JavaScript thread. libgomp keeps a team for every thread that ever ran a
// parallel region, and once their threads outnumber the CPUs it stops spinning between regions, so every
// thread that computes with a team slows all the others down for the rest of the process.
void useOneThread();

}  // namespace pace
