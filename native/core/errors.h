#pragma once
#include <stdexcept>
#include <string>

namespace pace {

// Every error the core raises for bad input: the message names the file, key or field and what was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace pace
