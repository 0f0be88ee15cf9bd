#include "tensor/cpu_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "errors.h"
#include "tensor/host_memory.h"

namespace pace {

namespace {

constexpr size_t kAlignment = 64;  // what libtorch's own CPU allocator guarantees (AVX-512 loads)
constexpr size_t kMinCachedBytes = size_t{1} << 20;

// Sits just before every block we hand out: where malloc's block starts, and the cache bucket (0: uncached).
struct Header {
  void* raw;
  size_t bucket;
};

// Sizes round up to 1/16 of their power of two, so shapes that differ slightly share blocks (≤ 6.25 % slack).
size_t bucketFor(size_t bytes) {
  size_t power = 1;
  while (power < bytes) power <<= 1;
  const size_t step = std::max<size_t>(power / 16, 4096);
  return (bytes + step - 1) / step * step;
}

uint64_t physicalMemory() {
  const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && pageSize > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(pageSize) : 0;
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator() : limit_(std::max<uint64_t>(physicalMemory() / 4, uint64_t{256} << 20)) {}

  // libtorch 2.3 made Allocator::allocate non-const and added a pure copy_data; 1.13 has the const allocate
  // only. Declaring both forms without `override` lets whichever the headers declare be the override.
  c10::DataPtr allocate(size_t bytes) const { return const_cast<CachingCpuAllocator*>(this)->allocateBlock(bytes); }
  c10::DataPtr allocate(size_t bytes) { return allocateBlock(bytes); }
  void copy_data(void* destination, const void* source, std::size_t count) const {
    std::memcpy(destination, source, count);
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  static void release(void* data) {
    if (!data) return;
    Header* header = static_cast<Header*>(data) - 1;
    if (header->bucket != 0 && instance().keep(data, header->bucket)) return;
    std::free(header->raw);
  }

  static CachingCpuAllocator& instance() {
    static auto* allocator = new CachingCpuAllocator();  // never destroyed: tensors may outlive static teardown
    return *allocator;
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    CpuCacheStats result;
    result.cachedBytes = cachedBytes_;
    for (const auto& [bucket, blocks] : free_) result.cachedBlocks += blocks.size();
    result.hits = hits_;
    result.misses = misses_;
    result.limitBytes = limit_;
    return result;
  }

  void releaseAll() {
    std::map<size_t, std::vector<void*>> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      released.swap(free_);
      cachedBytes_ = 0;
    }
    for (const auto& [bucket, blocks] : released)
      for (void* data : blocks) std::free((static_cast<Header*>(data) - 1)->raw);
  }

 private:
  c10::DataPtr allocateBlock(size_t bytes) {
    if (bytes == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    size_t bucket = 0;
    if (bytes >= kMinCachedBytes) {
      bucket = bucketFor(bytes);
      if (void* reused = take(bucket)) return {reused, reused, &release, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t capacity = bucket != 0 ? bucket : bytes;
    void* raw = std::malloc(capacity + sizeof(Header) + kAlignment);
    if (!raw) throw UnsupportedError(outOfHostMemory(capacity));
    const auto address = reinterpret_cast<uintptr_t>(raw) + sizeof(Header);
    void* data = reinterpret_cast<void*>((address + kAlignment - 1) / kAlignment * kAlignment);
    *(static_cast<Header*>(data) - 1) = Header{raw, bucket};
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  void* take(size_t bucket) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = free_.find(bucket);
    if (found == free_.end() || found->second.empty()) {
      ++misses_;
      return nullptr;
    }
    void* data = found->second.back();
    found->second.pop_back();
    cachedBytes_ -= bucket;
    ++hits_;
    return data;
  }

  bool keep(void* data, size_t bucket) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cachedBytes_ + bucket > limit_) return false;
    free_[bucket].push_back(data);
    cachedBytes_ += bucket;
    return true;
  }

  const uint64_t limit_;
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // by bucket size: blocks ready for reuse
  uint64_t cachedBytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

std::once_flag installed;
bool active = false;

}  // namespace

void installCpuCache() {
  std::call_once(installed, [] {
    const char* setting = std::getenv("PACE_CPU_CACHE");
    if (setting && std::strcmp(setting, "0") == 0) return;
    c10::SetCPUAllocator(&CachingCpuAllocator::instance(), /*priority=*/10);
    active = true;
  });
}

CpuCacheStats cpuCacheStats() {
  if (!active) return {};
  CpuCacheStats stats = CachingCpuAllocator::instance().stats();
  stats.installed = true;
  return stats;
}

void releaseCpuCache() {
  if (active) CachingCpuAllocator::instance().releaseAll();
}

}  // namespace pace
