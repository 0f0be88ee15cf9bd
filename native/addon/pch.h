// Precompiled header for the addon: node-addon-api plus the libtorch headers the core's API exposes.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>
