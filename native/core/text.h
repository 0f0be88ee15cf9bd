#pragma once
// Name tests on parameter and file names, and file text shown in messages.
#include <cstdio>
#include <string>

namespace pace {

inline bool startsWith(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

inline bool endsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Text taken from a file, for a message: control characters written as \xNN (a crafted name must not drive the
// terminal that prints the error) and cut after `limit` bytes, saying how many there were.
inline std::string shownFromFile(const std::string& text, size_t limit = 200) {
  std::string shown;
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      shown += escaped;
    } else {
      shown += text[i];
    }
  }
  if (text.size() > limit) shown += "... (" + std::to_string(text.size()) + " bytes)";
  return shown;
}

}  // namespace pace
