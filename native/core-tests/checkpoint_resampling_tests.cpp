// Fitting a checkpoint to another geometry (models/checkpoint_resampling.h) against timm 0.9.12's own functions
// (the values printed by test/reference/timm_checkpoint_resampling.py from closed-form inputs), and against what
// the resampling promises: a resampled patch kernel gives on a resized patch what the old one gave on the patch.
#include <ATen/ATen.h>
#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/upsample_bilinear2d.h>

#include <cmath>
#include <string>
#include <vector>

#include "check.h"
#include "errors.h"
#include "models/checkpoint_resampling.h"

namespace pace::tests {
namespace {

// From test/reference/timm_checkpoint_resampling.py (timm 0.9.12, torch 1.13).
const std::vector<float> kTimmTable3To5 = {0,
                                           0.891207278,
                                           0,
                                           0.891207337,
                                           0.120538317,
                                           0.925779641,
                                           0.361615419,
                                           0.994924307,
                                           0.674287915,
                                           0.963982999,
                                           0.895698667,
                                           0.802570999,
                                           0.962486804,
                                           0.622546852,
                                           0.995880842,
                                           0.532534897,
                                           0.995880842,
                                           0.532534897,
                                           0,
                                           0.891207337,
                                           0,
                                           0.891207337,
                                           0.120538317,
                                           0.9257797,
                                           0.361615449,
                                           0.994924366,
                                           0.674287915,
                                           0.963982999,
                                           0.895698667,
                                           0.802571058,
                                           0.962486804,
                                           0.622546852,
                                           0.995880842,
                                           0.532534897,
                                           0.995880842,
                                           0.532534897,
                                           0.320424676,
                                           0.657612741,
                                           0.320424676,
                                           0.657612741,
                                           0.382482558,
                                           0.639784932,
                                           0.506598592,
                                           0.604129314,
                                           0.624206781,
                                           0.46887967,
                                           0.657331467,
                                           0.270169437,
                                           0.620103478,
                                           0.113318443,
                                           0.601489544,
                                           0.0348930769,
                                           0.601489484,
                                           0.0348930843,
                                           0.96127522,
                                           0.190422654,
                                           0.96127522,
                                           0.190422654,
                                           0.90637207,
                                           0.0677944496,
                                           0.796565473,
                                           -0.177462429,
                                           0.524044335,
                                           -0.521328807,
                                           0.180596262,
                                           -0.794635773,
                                           -0.0646645129,
                                           -0.90514034,
                                           -0.187294662,
                                           -0.960392475,
                                           -0.187294662,
                                           -0.960392475,
                                           -0.529836118,
                                           -0.99616462,
                                           -0.529836118,
                                           -0.99616462,
                                           -0.620112896,
                                           -0.963146687,
                                           -0.800666869,
                                           -0.897110581,
                                           -0.963130951,
                                           -0.676636755,
                                           -0.995239854,
                                           -0.364583343,
                                           -0.926845014,
                                           -0.123651169,
                                           -0.892647684,
                                           -0.00318530179,
                                           -0.892647684,
                                           -0.00318530179,
                                           -0.669239879,
                                           0.35864386,
                                           -0.669239879,
                                           0.35864386,
                                           -0.564577878,
                                           0.463073164,
                                           -0.355253577,
                                           0.67193228,
                                           0.00681464002,
                                           0.894277751,
                                           0.367960513,
                                           0.995586991,
                                           0.575523436,
                                           0.973294377,
                                           0.679304659,
                                           0.96214819,
                                           0.679304659,
                                           0.96214819,
                                           0.376059413,
                                           0.651872873,
                                           0.376059443,
                                           0.651872933,
                                           0.432672828,
                                           0.626297593,
                                           0.545899749,
                                           0.575147033,
                                           0.64185518,
                                           0.420577794,
                                           0.650938451,
                                           0.209085315,
                                           0.598259628,
                                           0.0492244139,
                                           0.571920276,
                                           -0.0307058878,
                                           0.571920276,
                                           -0.0307058692,
                                           0.898708105,
                                           0.798487127,
                                           0.898708105,
                                           0.798487127,
                                           0.931297243,
                                           0.707909703,
                                           0.996475637,
                                           0.526754558,
                                           0.959374845,
                                           0.183728278,
                                           0.792427182,
                                           -0.184164777,
                                           0.609627783,
                                           -0.4128097,
                                           0.518228233,
                                           -0.527131975,
                                           0.518228233,
                                           -0.527131975,
                                           0.898708105,
                                           0.798487127,
                                           0.898708165,
                                           0.798487067,
                                           0.931297243,
                                           0.707909703,
                                           0.996475637,
                                           0.526754558,
                                           0.959374845,
                                           0.183728278,
                                           0.792427242,
                                           -0.184164777,
                                           0.609627724,
                                           -0.4128097,
                                           0.518228233,
                                           -0.527131975,
                                           0.518228233,
                                           -0.527131975};
const std::vector<float> kTimmTable5To3 = {
    0.88120997,   0.781297088,  0.976760685,  0.517991483,  0.941066861,  0.181944951,  0.778004169,  -0.178727031,
    0.512299597,  -0.511877358, -0.965235174, -0.668500304, -0.994552553, -0.35822928,  -0.889555216, 0.00362937758,
    -0.664160728, 0.364996821,  -0.351997107, 0.673874557,  0.99663204,   0.51754427,   0.957429886,  0.177025378,
    0.788252056,  -0.190858588, 0.512387991,  -0.532910705, 0.170592889,  -0.80016309,  -0.992755711, -0.348271102,
    -0.886421442, 0.0104438886, -0.659050763, 0.371332824,  -0.34248063,  0.681963623,  0.0168490186, 0.898131907,
    0.934469283,  0.161572844,  0.767499626,  -0.195484042, 0.4949826,    -0.529653966, 0.15547201,   -0.792137802,
    -0.201510817, -0.94587189};
const std::vector<float> kTimmPatch3To5Bicubic = {
    0.106852822,  0.160662562,  0.250788152,   0.303659052,    0.328440875,  0.242073476,   0.27669856,    0.329476476,
    0.333310544,  0.329799742,  0.41585657,    0.4156169,      0.40268749,   0.32993868,    0.28308925,    0.243701503,
    0.208796516,  0.14091526,   0.0521010198,  0.000885546207, 0.109375745,  0.0554413758,  -0.0414069779, -0.132104337,
    -0.181245908, -0.170193687, -0.219877988,  -0.300941408,   -0.337299824, -0.352151096,  -0.280002981,  -0.306946576,
    -0.345258534, -0.332282245, -0.31926325,   -0.40877986,    -0.396483302, -0.362852395,  -0.275319606,  -0.221024051,
    -0.197505519, -0.156197965, -0.0786005929, 0.0106728906,   0.061078202,  -0.0423553437, 0.0137226908,  0.112272821,
    0.194144785,  0.237227529};
const std::vector<float> kTimmPatch3To5Bilinear = {
    0.127439141,  0.174558252,  0.245236769,  0.341132045,   0.405062228,  0.253032476,  0.265089005,   0.283173978,
    0.330376506,  0.361844867,  0.441422194,  0.400885195,   0.340079725,  0.314243138,  0.297018766,   0.260396153,
    0.20118995,   0.112380683,  0.0351270624, -0.0163753778, 0.139712125,  0.0680597946, -0.0394186452, -0.150950313,
    -0.225304767, -0.205328062, -0.240798801, -0.294004798,  -0.377442271, -0.433067173, -0.297117531,  -0.297861785,
    -0.29897809,  -0.330837131, -0.352076441, -0.434801668,  -0.383456171, -0.306437969, -0.260929406,  -0.230590433,
    -0.20861052,  -0.148145124, -0.057447046, 0.0273439791,  0.0838713422, -0.057816457, 0.00872889068, 0.108546861,
    0.219526231,  0.293512493};
const std::vector<float> kTimmPatch4To2Bicubic = {3.52381468, 2.5127883,  -3.08729601, -3.27320743,
                                                  3.1242938,  3.24276733, -2.25901651, -3.55341768};
const std::vector<float> kTimmPatch4To2Bilinear = {2.87266588, 2.40579963, -2.7492528,  -2.65980196,
                                                   2.53542972, 2.82633567, -2.23822784, -2.89992428};

// sin(0.37 i + phase) for i < count, in float64 stored in float32: the reference script's closed form.
at::Tensor closedForm(int64_t count, double phase) {
  std::vector<double> values;
  for (int64_t i = 0; i < count; ++i) values.push_back(std::sin(0.37 * static_cast<double>(i) + phase));
  return at::tensor(values, at::kDouble).to(at::kFloat);
}

at::Tensor table(int64_t window, int64_t heads) {
  const int64_t rows = (2 * window - 1) * (2 * window - 1);
  std::vector<at::Tensor> columns;
  for (int64_t h = 0; h < heads; ++h) columns.push_back(closedForm(rows, 1.1 * static_cast<double>(h)));
  return at::stack(columns, 1);
}

at::Tensor kernel(int64_t outChannels, int64_t inChannels, int64_t size) {
  return closedForm(outChannels * inChannels * size * size, 0.5).view({outChannels, inChannels, size, size});
}

void checkAgainstTimm(const at::Tensor& ours, const std::vector<float>& timm, int64_t rows, int64_t columns,
                      double tolerance, const std::string& what) {
  check(ours.dim() == 2 || ours.dim() == 4, what + ": unexpected rank");
  const at::Tensor expected = at::tensor(timm, at::kFloat);
  check(ours.numel() == rows * columns && expected.numel() == rows * columns,
        what + ": " + std::to_string(ours.numel()) + " values, timm has " + std::to_string(expected.numel()));
  const double error = relativeError(ours.flatten(), expected);
  check(error < tolerance, what + ": relative error " + std::to_string(error) + " against timm");
}

void relativePositionTablesAsTimm() {
  // timm computes these in float32 with the same operations in the same order: equal to float32 rounding.
  checkAgainstTimm(models::resizeRelativePositionTable(table(3, 2), 5), kTimmTable3To5, 81, 2, 1e-6, "window 3 to 5");
  checkAgainstTimm(models::resizeRelativePositionTable(table(5, 2), 3), kTimmTable5To3, 25, 2, 1e-6, "window 5 to 3");
  const at::Tensor same = table(4, 3);
  check(models::resizeRelativePositionTable(same, 4).equal(same), "a table of the model's window is changed");
  // Interpolation weights sum to one: a table constant per head stays so, wherever the offsets land.
  const at::Tensor constant = at::tensor(std::vector<float>{0.25F, -3.0F}).repeat({169, 1});
  const at::Tensor resized = models::resizeRelativePositionTable(constant, 12);
  check(resized.sizes() == at::IntArrayRef({529, 2}), "window 7 to 12 is not [529, 2]");
  check(relativeError(resized, constant.slice(0, 0, 1).expand({529, 2})) < 1e-6, "a constant table does not stay");
}

void tablesNotOfAWindowAreRefused() {
  for (const int64_t rows : {168, 16}) {  // not a square; a square of even side
    try {
      models::resizeRelativePositionTable(at::zeros({rows, 2}), 7);
    } catch (const ShapeError& error) {
      check(std::string(error.what()).find(std::to_string(rows) + " rows") != std::string::npos,
            std::string("the refusal does not name the rows: ") + error.what());
      continue;
    }
    throw Failure{std::to_string(rows) + " rows were taken for a relative-position table"};
  }
}

void patchEmbeddingsAsTimm() {
  // timm builds the resize in float32 and inverts it in float64 (NumPy), ours is float64 throughout.
  checkAgainstTimm(models::resamplePatchEmbedding(kernel(2, 1, 3), 5, 5, true), kTimmPatch3To5Bicubic, 2, 25, 1e-5,
                   "3x3 to 5x5, bicubic with antialias");
  checkAgainstTimm(models::resamplePatchEmbedding(kernel(2, 1, 3), 5, 5, false), kTimmPatch3To5Bilinear, 2, 25, 1e-5,
                   "3x3 to 5x5, bilinear");
  checkAgainstTimm(models::resamplePatchEmbedding(kernel(2, 1, 4), 2, 2, true), kTimmPatch4To2Bicubic, 2, 4, 1e-5,
                   "4x4 to 2x2, bicubic with antialias");
  checkAgainstTimm(models::resamplePatchEmbedding(kernel(2, 1, 4), 2, 2, false), kTimmPatch4To2Bilinear, 2, 4, 1e-5,
                   "4x4 to 2x2, bilinear");
}

void aGrownKernelSeesTheResizedPatchAsTheOldOneThePatch() {
  at::manual_seed(3);
  const at::Tensor old = at::randn({4, 3, 8, 8}, at::kDouble);
  const at::Tensor patches = at::randn({5, 3, 8, 8}, at::kDouble);
  for (const bool bicubic : {true, false}) {
    const at::Tensor grown = models::resamplePatchEmbedding(old, 16, 16, bicubic);
    const at::Tensor resized = bicubic
                                   ? at::_upsample_bicubic2d_aa(patches, {16, 16}, false, c10::nullopt, c10::nullopt)
                                   : at::upsample_bilinear2d(patches, {16, 16}, false, c10::nullopt, c10::nullopt);
    // The patch embedding's response: per patch and output channel, the sum over channels and pixels.
    const at::Tensor before = at::einsum("pchw,ochw->po", {patches, old});
    const at::Tensor after = at::einsum("pchw,ochw->po", {resized, grown});
    const double error = relativeError(after, before);
    check(error < 1e-9, std::string(bicubic ? "bicubic" : "bilinear") + ": the grown kernel's response is off by " +
                            std::to_string(error));
  }
  check(models::resamplePatchEmbedding(old.to(at::kFloat), 16, 16, true).scalar_type() == at::kFloat,
        "a float32 kernel does not stay float32");
}

void patchesLargerThanAnyRealOneAreRefused() {
  // A 64-pixel side is resampled; a 65-pixel one is refused before its resize matrix (65² × 65² doubles) is built.
  check(models::resamplePatchEmbedding(at::ones({1, 1, 64, 1}, at::kDouble), 32, 1, false).sizes() ==
            at::IntArrayRef({1, 1, 32, 1}),
        "a 64x1 kernel is not resampled to 32x1");
  try {
    models::resamplePatchEmbedding(at::ones({1, 1, 65, 1}), 16, 16, true);
  } catch (const ShapeError& error) {
    check(std::string(error.what()) ==
              "the checkpoint's patches are 65x1 pixels: resampling patches larger than 64x64 is refused (real ones "
              "are 8 to 32)",
          std::string("the refusal reads: ") + error.what());
    return;
  }
  throw Failure{"a 65x1 patch kernel was resampled"};
}

}  // namespace

TestList checkpointResamplingTests() {
  return {
      {"Swin relative-position tables resized to another window as timm does", relativePositionTablesAsTimm},
      {"a table that is not (2w-1)^2 rows is refused, naming its rows", tablesNotOfAWindowAreRefused},
      {"patch embeddings resampled to another patch size as timm does", patchEmbeddingsAsTimm},
      {"a grown patch kernel responds to the resized patch as the old one to the patch",
       aGrownKernelSeesTheResizedPatchAsTheOldOneThePatch},
      {"patch kernels larger than 64 pixels a side are refused before resampling",
       patchesLargerThanAnyRealOneAreRefused},
  };
}

}  // namespace pace::tests
