// Precompiled header for the core: libtorch's ATen is the expensive part of every translation unit.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>
