#pragma once
// A crash of the core tests reported on stderr before the process dies: the test it happened in, the faulting
// address and instruction, the thread, and a backtrace. On the GPU machine the log is all that comes back (a
// segfault there once left an empty one, and then one whose backtrace stopped at the faulting frame).

namespace pace::tests {

// Installs the report for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT; `*runningTest` names the test at the time
// of a crash (the pointer it holds may change, the pointer to it must live as long as the process).
void installCrashReport(const char* const* runningTest);

}  // namespace pace::tests
