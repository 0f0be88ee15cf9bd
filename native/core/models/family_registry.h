#pragma once
// Backbone families by name. A family's files (models/<family>.{h,cpp}) hold its config, modules, checkpoint
// filter and PACE defaults; here each is one line, so the addon builds any family without knowing it.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "models/backbone.h"

namespace pace::models {

// A spec's fields as a family reads them (the addon implements this over a JavaScript object). Each throws
// OptionError naming the field when it is missing or of the wrong type.
class SpecFields {
 public:
  virtual ~SpecFields() = default;
  virtual int64_t integer(const char* name) const = 0;
  virtual double number(const char* name) const = 0;
  virtual std::vector<int64_t> integers(const char* name) const = 0;
  virtual bool flag(const char* name) const = 0;
};

// The fields every family's config has, read from a spec.
template <typename Config>
void readSharedFields(Config& config, const SpecFields& spec) {
  config.imgSize = spec.integer("imgSize");
  config.patchSize = spec.integer("patchSize");
  config.embedDim = spec.integer("embedDim");
  config.mlpRatio = spec.number("mlpRatio");
  config.numClasses = spec.integer("numClasses");
  config.dropPathRate = spec.number("dropPathRate");
}

// Reads a family's config from a spec (on the JS thread) into a builder that creates the backbone anywhere.
using BackboneBuilder = std::function<std::shared_ptr<Backbone>()>;
using FamilyConfigurer = BackboneBuilder (*)(const SpecFields& spec);

// The builder for a spec of `family`; throws OptionError naming the known families.
BackboneBuilder backboneBuilder(const std::string& family, const SpecFields& spec);
std::vector<std::string> familyNames();

}  // namespace pace::models
