// The adapter types by name: a new type is one file in peft/adapters/ and one line in each list below.
#include "errors.h"
#include "peft/adapter.h"

namespace pace::peft {

std::shared_ptr<Adapter> createLoraMulVptAdd(models::LinearImpl& linear, int64_t rank);
std::shared_ptr<Adapter> createLoraMul(models::LinearImpl& linear, int64_t rank);
std::shared_ptr<Adapter> createLoraAdd(models::LinearImpl& linear, int64_t rank);
std::shared_ptr<Adapter> createVptAdd(models::LinearImpl& linear, int64_t rank);
std::shared_ptr<Adapter> createLoraAddVptAdd(models::LinearImpl& linear, int64_t rank);

namespace {

const std::vector<std::pair<std::string, AdapterFactory>>& registry() {
  static const std::vector<std::pair<std::string, AdapterFactory>> types = {
      {"loramul_vptadd", createLoraMulVptAdd},
      {"loramul", createLoraMul},
      {"loraadd", createLoraAdd},
      {"vptadd", createVptAdd},
      {"loraadd_vptadd", createLoraAddVptAdd},
  };
  return types;
}

}  // namespace

std::vector<std::string> adapterTypeNames() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry()) names.push_back(name);
  return names;
}

AdapterFactory adapterFactory(const std::string& type) {
  for (const auto& [name, factory] : registry()) {
    if (name == type) return factory;
  }
  std::string known;
  for (const auto& name : adapterTypeNames()) known += (known.empty() ? "" : ", ") + name;
  throw OptionError("unknown adapter type '" + type + "' (expected one of " + known + ")");
}

}  // namespace pace::peft
