#include "crash_report.h"

#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace pace::tests {

namespace {

const char* const* currentTest = nullptr;

// Only async-signal-safe calls from here on: write(2), no formatting library.
void writeText(const char* text) { (void)!write(STDERR_FILENO, text, std::strlen(text)); }

void writeNumber(uintptr_t value, unsigned base) {
  char digits[2 + 20];  // "0x" and the 20 decimal digits of the largest 64-bit value (16 in hex)
  char* end = digits + sizeof digits;
  char* at = end;
  do {
    *--at = "0123456789abcdef"[value % base];
    value /= base;
  } while (value != 0);
  if (base == 16) {
    *--at = 'x';
    *--at = '0';
  }
  (void)!write(STDERR_FILENO, at, static_cast<size_t>(end - at));
}

const char* describe(int signal) {
  switch (signal) {
    case SIGSEGV:
      return "segmentation fault";
    case SIGBUS:
      return "bus error";
    case SIGILL:
      return "illegal instruction";
    case SIGFPE:
      return "arithmetic exception";
    default:
      return "abort";
  }
}

void report(int signal, siginfo_t* info, void* context) {
  writeText("\nCRASH (");
  writeText(describe(signal));
  writeText(") in test: ");
  writeText(currentTest && *currentTest ? *currentTest : "(unknown)");
  writeText("\n  address ");
  writeNumber(reinterpret_cast<uintptr_t>(info->si_addr), 16);
#if defined(__x86_64__)
  // A jump into unloaded or unmapped code shows here, where the backtrace below cannot unwind.
  writeText(", instruction ");
  writeNumber(static_cast<uintptr_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]), 16);
#else
  (void)context;
#endif
  writeText(", thread ");
  writeNumber(static_cast<uintptr_t>(syscall(SYS_gettid)), 10);
  writeText(" of process ");
  writeNumber(static_cast<uintptr_t>(getpid()), 10);
  writeText("\n");
  void* frames[64];
  backtrace_symbols_fd(frames, backtrace(frames, 64), STDERR_FILENO);
  // SA_RESETHAND restored the default action: the process dies of the same signal, with its usual exit status.
  raise(signal);
}

}  // namespace

void installCrashReport(const char* const* runningTest) {
  currentTest = runningTest;
  void* warm[1];
  backtrace(warm, 1);  // its first call loads libgcc_s (and allocates): never first inside a crash in malloc
  // A stack of its own: a stack overflow's SIGSEGV has none left to run the report on.
  static char alternateStack[1 << 16];
  stack_t stack{};
  stack.ss_sp = alternateStack;
  stack.ss_size = sizeof alternateStack;
  sigaltstack(&stack, nullptr);
  struct sigaction action {};
  action.sa_sigaction = report;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  for (const int signal : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT}) sigaction(signal, &action, nullptr);
}

}  // namespace pace::tests
