#include "models/checkpoint_resampling.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/bucketize.h>
#include <ATen/ops/linalg_pinv.h>
#include <ATen/ops/upsample_bilinear2d.h>

#include <cmath>
#include <string>
#include <vector>

#include "errors.h"

namespace pace::models {

namespace {

// F.interpolate(x, size) for [N, C, h, w], as timm's filters call it (align_corners false, no scale factors).
torch::Tensor interpolate(const torch::Tensor& x, int64_t height, int64_t width, bool bicubicAntialias) {
  return bicubicAntialias ? at::_upsample_bicubic2d_aa(x, {height, width}, false, c10::nullopt, c10::nullopt)
                          : at::upsample_bilinear2d(x, {height, width}, false, c10::nullopt, c10::nullopt);
}

// BEiT's source offsets for a table side of `from` entries stretched over `to`: the spacing grows by a ratio q,
// found by bisection, so that the outermost offset lands near to / 2. Doubles as in Python, in its order.
std::vector<double> geometricOffsets(int64_t from, int64_t to) {
  const int64_t half = from / 2;
  double left = 1.01, right = 1.5, ratio = 0;
  while (right - left > 1e-6) {
    ratio = (left + right) / 2.0;
    const double reach = (1.0 - std::pow(ratio, static_cast<double>(half))) / (1.0 - ratio);
    if (reach > static_cast<double>(to / 2)) {
      right = ratio;
    } else {
      left = ratio;
    }
  }
  std::vector<double> outward;
  double offset = 1;
  for (int64_t i = 0; i < half; ++i) {
    outward.push_back(offset);
    offset += std::pow(ratio, static_cast<double>(i + 1));
  }
  std::vector<double> offsets;
  for (auto it = outward.rbegin(); it != outward.rend(); ++it) offsets.push_back(-*it);
  offsets.push_back(0);
  offsets.insert(offsets.end(), outward.begin(), outward.end());
  return offsets;
}

// One axis of timm's RegularGridInterpolator: for each target, the neighbouring source indices and the distances
// to them (clamped at the ends; both 1 where a target sits on a source point).
struct AxisWeights {
  torch::Tensor left, right;      // int64 indices into the source offsets
  torch::Tensor toLeft, toRight;  // float32 distances
  torch::Tensor span() const { return toLeft + toRight; }
};

AxisWeights axisWeights(const torch::Tensor& sources, const torch::Tensor& targets) {
  const int64_t last = sources.size(0) - 1;
  AxisWeights axis;
  axis.right = at::bucketize(targets, sources).clamp_max(last);
  axis.left = (axis.right - 1).clamp(0, last);
  axis.toLeft = (targets - sources.index_select(0, axis.left)).clamp_min(0);
  axis.toRight = (sources.index_select(0, axis.right) - targets).clamp_min(0);
  const torch::Tensor onPoint = axis.toLeft.eq(0).logical_and(axis.toRight.eq(0));
  axis.toLeft.masked_fill_(onPoint, 1);
  axis.toRight.masked_fill_(onPoint, 1);
  return axis;
}

}  // namespace

torch::Tensor resamplePositionEmbedding(const torch::Tensor& posEmbed, int64_t newGrid, int64_t prefixTokens,
                                        bool bicubicAntialias) {
  const int64_t tokens = posEmbed.size(1) - prefixTokens, dim = posEmbed.size(2);
  if (tokens < 1)
    throw ShapeError("the checkpoint has " + std::to_string(posEmbed.size(1)) + " position(s), no grid tokens after " +
                     std::to_string(prefixTokens) + " class token(s)");
  const int64_t oldGrid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
  if (oldGrid * oldGrid != tokens)
    throw ShapeError("the checkpoint's " + std::to_string(tokens) + " grid tokens are not a square grid");
  const torch::Tensor prefix = posEmbed.slice(1, 0, prefixTokens);
  const torch::Tensor grid =
      posEmbed.slice(1, prefixTokens).reshape({1, oldGrid, oldGrid, dim}).permute({0, 3, 1, 2}).to(torch::kFloat);
  const torch::Tensor resized = interpolate(grid, newGrid, newGrid, bicubicAntialias);
  return torch::cat({prefix, resized.permute({0, 2, 3, 1}).reshape({1, newGrid * newGrid, dim}).to(posEmbed.dtype())},
                    1);
}

torch::Tensor resamplePatchEmbedding(const torch::Tensor& kernel, int64_t height, int64_t width,
                                     bool bicubicAntialias) {
  const int64_t oldHeight = kernel.size(2), oldWidth = kernel.size(3), oldArea = oldHeight * oldWidth;
  // The resize matrix is oldArea² doubles and its pseudo-inverse cubic in it: a hostile 256 × 256 kernel (75 MB
  // in fp16) would ask for 34 GB. Real patches are 8 to 32 pixels (FlexiViT's up to 48).
  constexpr int64_t kMaxPatchSide = 64;
  if (oldHeight > kMaxPatchSide || oldWidth > kMaxPatchSide)
    throw ShapeError("the checkpoint's patches are " + std::to_string(oldHeight) + "x" + std::to_string(oldWidth) +
                     " pixels: resampling patches larger than " + std::to_string(kMaxPatchSide) + "x" +
                     std::to_string(kMaxPatchSide) + " is refused (real ones are 8 to 32)");
  // Row i is the i-th one-pixel patch resized: a patch x (flattened) resizes to x · resize.
  const torch::Tensor basis = torch::eye(oldArea, torch::kDouble).view({oldArea, 1, oldHeight, oldWidth});
  const torch::Tensor resize = interpolate(basis, height, width, bicubicAntialias).reshape({oldArea, height * width});
  // The kernel k' with resize · k' = k (least squares, least norm): then ⟨x · resize, k'⟩ = ⟨x, k⟩.
  const torch::Tensor inverse = at::linalg_pinv(resize, /*rcond=*/1e-15, /*hermitian=*/false);
  return kernel.to(torch::kDouble)
      .reshape({-1, oldArea})
      .matmul(inverse.t())
      .reshape({kernel.size(0), kernel.size(1), height, width})
      .to(kernel.dtype());
}

torch::Tensor resizeRelativePositionTable(const torch::Tensor& table, int64_t newWindow) {
  const int64_t rows = table.size(0), heads = table.size(1);
  const int64_t from = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(rows))));
  if (from * from != rows || from % 2 == 0)
    throw ShapeError("the checkpoint's table has " + std::to_string(rows) +
                     " rows, not (2w-1)^2 for a window w: it is not a Swin relative-position table");
  const int64_t to = 2 * newWindow - 1;
  if (from == to) return table;
  const auto floats = torch::TensorOptions().dtype(torch::kFloat);
  const std::vector<double> offsets = geometricOffsets(from, to);
  const torch::Tensor sources = torch::tensor(offsets, torch::kDouble).to(torch::kFloat);
  const double reach = static_cast<double>(to / 2);
  const torch::Tensor targets = torch::arange(-reach, reach + 0.1, 1.0, floats);
  const AxisWeights axis = axisWeights(sources, targets);  // the table is square: both axes alike

  // The table's rows are (dy, dx) offsets, dy major: per head a from × from grid, interpolated at every target
  // pair with the four corners in timm's order and its float32 products.
  const torch::Tensor grid = table.to(torch::kFloat).t().reshape({heads, from, from});
  torch::Tensor sum = torch::zeros({heads, to, to}, floats);
  for (const bool rowRight : {false, true}) {
    for (const bool columnRight : {false, true}) {
      const torch::Tensor rowIndex = (rowRight ? axis.right : axis.left).view({to, 1});
      const torch::Tensor columnIndex = (columnRight ? axis.right : axis.left).view({1, to});
      // A corner weighs the distance to the opposite one.
      const torch::Tensor weight = (rowRight ? axis.toLeft : axis.toRight).view({to, 1}) *
                                   (columnRight ? axis.toLeft : axis.toRight).view({1, to});
      const torch::Tensor corner = grid.index({torch::indexing::Slice(), rowIndex, columnIndex});
      sum = sum + corner * weight;
    }
  }
  const torch::Tensor resized = sum / (axis.span().view({to, 1}) * axis.span().view({1, to}));
  return resized.reshape({heads, to * to}).t().contiguous().to(table.dtype());
}

}  // namespace pace::models
