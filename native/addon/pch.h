// Precompiled header for the addon: node-addon-api and the core's surface (pace_core.h) with its libtorch headers.
#pragma once
#include <napi.h>

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include "pace_core.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>
