# Reference for native/core-tests/checkpoint_resampling_tests.cpp (run by hand, not by npm test): timm 0.9.12's own
# resize_rel_pos_bias_table and resample_patch_embed on small inputs given by a closed form, printed as C++ arrays.
#   TIMM_SOURCE=<timm v0.9.12 checkout>/timm /usr/bin/python3 test/reference/timm_checkpoint_resampling.py
# (torch 1.13 with functorch here.) timm's package __init__ is not run: only the two layer modules are imported.
import math
import os
import sys
import types

import torch

timm_source = os.environ['TIMM_SOURCE']
for name, path in (('timm', timm_source), ('timm.layers', os.path.join(timm_source, 'layers'))):
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package
from timm.layers.patch_embed import resample_patch_embed  # noqa: E402
from timm.layers.pos_embed_rel import resize_rel_pos_bias_table  # noqa: E402


def closed_form(count, phase):
    """sin(0.37 i + phase) for i < count, in float64, stored in float32 (the C++ test makes the same values)."""
    return torch.tensor([math.sin(0.37 * i + phase) for i in range(count)], dtype=torch.float64).float()


def table(window, heads):
    """A [(2w-1)^2, heads] table whose column h is closed_form(rows, 1.1 h)."""
    rows = (2 * window - 1) ** 2
    return torch.stack([closed_form(rows, 1.1 * h) for h in range(heads)], dim=1)


def kernel(out_channels, in_channels, size):
    """A [O, I, size, size] kernel: closed_form over all its values in order."""
    return closed_form(out_channels * in_channels * size * size, 0.5).view(out_channels, in_channels, size, size)


def emit(name, values):
    text = ', '.join('%.9g' % v for v in values.flatten().tolist())
    print('const std::vector<float> %s = {%s};' % (name, text))


for old, new in ((3, 5), (5, 3)):
    resized = resize_rel_pos_bias_table(table(old, 2), (new, new), ((2 * new - 1) ** 2, 2))
    emit('kTimmTable%dTo%d' % (old, new), resized)
for old, new in ((3, 5), (4, 2)):
    for interpolation, antialias in (('bicubic', True), ('bilinear', False)):
        resized = resample_patch_embed(kernel(2, 1, old), (new, new), interpolation=interpolation, antialias=antialias)
        emit('kTimmPatch%dTo%d%s' % (old, new, 'Bicubic' if antialias else 'Bilinear'), resized)
