# Reference for test/images.test.ts (run by hand, not by npm test): a small CMYK JPEG as Pillow writes one (inverted
# Adobe storage) and the RGB that Pillow's Image.open(...).convert('RGB') gives for it, both printed as base64.
#   /usr/bin/python3 test/reference/cmyk_jpeg_pillow.py   (Pillow 9.4 here; its CMYK-to-RGB arithmetic is current)
import base64
import io

import numpy as np
from PIL import Image

height, width = 10, 12
y, x = np.mgrid[0:height, 0:width]
inks = np.stack([x * 23, y * 28, (x + y) * 12, (x * y * 7) % 256], axis=-1).clip(0, 255).astype(np.uint8)
stored = io.BytesIO()
Image.fromarray(inks, 'CMYK').save(stored, 'JPEG', quality=95)
rgb = np.asarray(Image.open(io.BytesIO(stored.getvalue())).convert('RGB'))
print('jpeg', base64.b64encode(stored.getvalue()).decode())
print('rgb', base64.b64encode(rgb.tobytes()).decode())
