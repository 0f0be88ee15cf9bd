# Reference for test/models.test.ts (run by hand, not by npm test): timm 0.9.12's logits for the test fixtures
# loaded into models of another geometry through timm's own loaders, which resample what does not fit:
#   - swin_tiny_test (window 7) into a window-14 Swin (relative-position tables of stages 0 and 1 resized);
#   - vit_tiny_test (patch 8, 32 px) into a patch-16, 64 px ViT (patch embedding resampled; the grid stays 4x4),
#     from the safetensors file (checkpoint_filter_fn: bicubic with antialias) and the .npz (_load_weights: bilinear).
#   TIMM_SOURCE=<timm v0.9.12 checkout>/timm PACE_FIXTURES=<fixtures> /usr/bin/python3 test/reference/timm_resampled_models.py
# timm's package __init__ is not run: the model modules are imported on their own (torch 1.13 and NumPy only).
import importlib.util
import json
import math
import os
import struct
import sys
import types

import numpy as np
import torch

timm_source, fixtures = os.environ['TIMM_SOURCE'], os.environ['PACE_FIXTURES']
for name, path in (('timm', timm_source), ('timm.models', os.path.join(timm_source, 'models'))):
    package = types.ModuleType(name)
    package.__path__ = [path]
    package.__version__ = '0.9.12'
    sys.modules[name] = package
# timm.layers imports torchvision's FrozenBatchNorm2d, which these models do not use.
for name in ('torchvision', 'torchvision.ops', 'torchvision.ops.misc'):
    sys.modules[name] = types.ModuleType(name)
sys.modules['torchvision.ops.misc'].FrozenBatchNorm2d = None
constants = importlib.util.spec_from_file_location('timm.data', os.path.join(timm_source, 'data', 'constants.py'))
sys.modules['timm.data'] = importlib.util.module_from_spec(constants)
constants.loader.exec_module(sys.modules['timm.data'])
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn as swin_filter  # noqa: E402
from timm.models.vision_transformer import VisionTransformer, _load_weights, checkpoint_filter_fn as vit_filter  # noqa

DTYPES = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64}


def read_safetensors(name):
    with open(os.path.join(fixtures, name), 'rb') as file:
        data = file.read()
    size = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + size])
    header.pop('__metadata__', None)
    body = data[8 + size:]
    return {key: torch.from_numpy(np.frombuffer(body[entry['data_offsets'][0]:entry['data_offsets'][1]],
                                                dtype=DTYPES[entry['dtype']]).reshape(entry['shape']).copy())
            for key, entry in header.items()}


def closed_form_images(batch, size):
    """[batch, 3, size, size] with value sin(0.01 i) at flat index i, in float64 stored in float32."""
    count = batch * 3 * size * size
    return torch.tensor([math.sin(0.01 * i) for i in range(count)], dtype=torch.float64).float().view(
        batch, 3, size, size)


def logits(model, images):
    model.eval()
    with torch.no_grad():
        return model(images).flatten().tolist()


out = {}
swin = SwinTransformer(img_size=112, patch_size=4, window_size=14, embed_dim=32, depths=(2, 2, 2),
                       num_heads=(2, 4, 8), num_classes=10)
swin.load_state_dict(swin_filter(read_safetensors('swin_tiny_test.safetensors'), swin))
out['swin_window14'] = logits(swin, read_safetensors('swin_tiny_test.io.safetensors')['input'])

vit_args = dict(img_size=64, patch_size=16, embed_dim=48, depth=3, num_heads=3, num_classes=10)
images = closed_form_images(2, 64)
vit = VisionTransformer(**vit_args)
vit.load_state_dict(vit_filter(read_safetensors('vit_tiny_test.safetensors'), vit))
out['vit_patch16_from_safetensors'] = logits(vit, images)
vit = VisionTransformer(**vit_args)
_load_weights(vit, os.path.join(fixtures, 'vit_tiny_test.npz'))
out['vit_patch16_from_npz'] = logits(vit, images)
for key, values in out.items():
    print('%s: [%s],' % (key, ', '.join('%.7g' % v for v in values)))
