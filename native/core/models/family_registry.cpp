// The backbone families by name: a new family is its own files plus one line in each list below.
#include "models/family_registry.h"

#include "errors.h"

namespace pace::models {

BackboneBuilder configureVit(const SpecFields& spec);
BackboneBuilder configureSwin(const SpecFields& spec);

namespace {

const std::vector<std::pair<std::string, FamilyConfigurer>>& registry() {
  static const std::vector<std::pair<std::string, FamilyConfigurer>> families = {
      {"vit", configureVit},
      {"swin", configureSwin},
  };
  return families;
}

}  // namespace

std::vector<std::string> familyNames() {
  std::vector<std::string> names;
  for (const auto& [name, configure] : registry()) names.push_back(name);
  return names;
}

BackboneBuilder backboneBuilder(const std::string& family, const SpecFields& spec) {
  for (const auto& [name, configure] : registry()) {
    if (name == family) return configure(spec);
  }
  std::string known;
  for (const auto& name : familyNames()) known += (known.empty() ? "'" : ", '") + name + "'";
  throw OptionError("spec.family must be one of " + known + "; got '" + family + "'");
}

}  // namespace pace::models
