# Reference for test/augment.test.ts (run by hand, not by npm test): Pillow's BICUBIC where timm's training
# transform uses it with --train-interpolation bicubic (DeiT's and NOAH's recipe): RandAugment's rotate, shear and
# translate (Image.rotate / Image.transform AFFINE with fillcolor) and the resized crop (crop, then resize). Prints one
# line per case, `name base64`, the output pixels row-major.
#   /usr/bin/python3 test/reference/bicubic_pillow.py   (Debian's python3-pil, Pillow 9.4)
import base64

from PIL import Image


def image(width, height, channels, seed):
    values = bytes(((x * 37 + y * 91 + c * 53 + seed * 17) ^ (x * y * 13)) % 256
                   for y in range(height) for x in range(width) for c in range(channels))
    return Image.frombytes('RGB' if channels == 3 else 'L', (width, height), values)


def show(name, picture):
    print(name, base64.b64encode(picture.tobytes()).decode())


fill = (124, 116, 104)
for label, picture, colour in [('rgb', image(11, 9, 3, 1), fill), ('grey', image(6, 7, 1, 4), fill[0])]:
    w, h = picture.size
    kwargs = dict(resample=Image.BICUBIC, fillcolor=colour)
    # timm's level functions: Rotate m6 -> 18 degrees, ShearX m7 -> 0.21, ShearY m4 negated -> -0.12,
    # TranslateXRel m5 -> 0.225 of the width, TranslateYRel m9 negated -> -0.405 of the height.
    show(f'{label}-rotate-18', picture.rotate(18.0, **kwargs))
    show(f'{label}-rotate-minus-18', picture.rotate(-18.0, **kwargs))
    show(f'{label}-shearx-0.21', picture.transform(picture.size, Image.AFFINE, (1, 0.21, 0, 0, 1, 0), **kwargs))
    show(f'{label}-sheary-minus-0.12', picture.transform(picture.size, Image.AFFINE, (1, 0, 0, -0.12, 1, 0), **kwargs))
    show(f'{label}-translatex-0.225',
         picture.transform(picture.size, Image.AFFINE, (1, 0, 0.225 * w, 0, 1, 0), **kwargs))
    show(f'{label}-translatey-minus-0.405',
         picture.transform(picture.size, Image.AFFINE, (1, 0, 0, 0, 1, -0.405 * h), **kwargs))

# torchvision's resized_crop on a PIL image: crop the box (left, top, right, bottom), then resize bicubic.
big = image(23, 19, 3, 2)
show('crop-2-3-13x15-to-6', big.crop((3, 2, 3 + 15, 2 + 13)).resize((6, 6), Image.BICUBIC))
show('crop-5-1-7x9-to-16', big.crop((1, 5, 1 + 9, 5 + 7)).resize((16, 16), Image.BICUBIC))
