// The epoch loop's step graphs (train/step_graphs.h): which steps keep their graphs when the parameters move.
#include <ATen/ATen.h>

#include "check.h"
#include "train/step_graphs.h"

namespace pace::tests {
namespace {

void graphsAreDroppedOnceTheParametersStorageChanges() {
  train::StepGraphs graphs;
  const at::Tensor images = at::zeros({2, 3, 4, 4}), targets = at::zeros({2}, at::kLong);
  const at::Tensor weight = at::ones({3}), bias = at::zeros({3});
  graphs.keepOnlyFor({weight.data_ptr(), bias.data_ptr()});
  graphs.entryFor(images, targets, false).warmups = 2;

  graphs.keepOnlyFor({weight.data_ptr(), bias.data_ptr()});
  check(graphs.entryFor(images, targets, false).warmups == 2, "a graph was dropped though nothing moved");

  // What Module::to does to a parameter moved away and back: the same tensor, new storage.
  at::Tensor moved = weight;
  moved.set_data(weight.clone());
  graphs.keepOnlyFor({moved.data_ptr(), bias.data_ptr()});
  check(graphs.entryFor(images, targets, false).warmups == 0,
        "a graph captured with a parameter's old storage was kept after the storage changed");
}

}  // namespace

TestList stepGraphsTests() {
  return {
      {"step graphs are dropped once a parameter's storage changes (a model moved away and back)",
       graphsAreDroppedOnceTheParametersStorageChanges},
  };
}

}  // namespace pace::tests
