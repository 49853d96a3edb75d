"""Reference outputs of Keras' apply_affine_transform for fer's parity test.

Run from the repo root (needs numpy, scipy, pillow and keras-preprocessing==1.1.2, e.g. in
bench/.venv):  bench/.venv/bin/python bench/keras_parity.py
Writes fixtures/keras-parity/{input.png, case-*.png, cases.json}.
"""
import json
import os

import numpy as np
import scipy.ndimage
from PIL import Image

# keras-preprocessing 1.1.2 calls scipy.ndimage.interpolation.affine_transform, a namespace newer
# scipy versions dropped; it is the same function as scipy.ndimage.affine_transform.
if not hasattr(scipy.ndimage, "interpolation"):
    scipy.ndimage.interpolation = scipy.ndimage
from keras_preprocessing.image import apply_affine_transform  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "keras-parity")
os.makedirs(OUT, exist_ok=True)

# A face-like test card: gradients, edges and a blob, deterministic.
r, c = np.mgrid[0:48, 0:48].astype(np.float64)
img = 60 + 2.5 * c + 1.0 * r
img += 80 * (((r - 20) ** 2 + (c - 30) ** 2) < 64)
img -= 50 * ((r > 34) & (r < 38) & (c > 10) & (c < 40))
img = np.clip(img, 0, 255).round().astype(np.uint8)
Image.fromarray(img, mode="L").save(os.path.join(OUT, "input.png"))

cases = [
    dict(theta=15, tx=0, ty=0, shear=0, zx=1, zy=1, fill_mode="nearest"),
    dict(theta=-30, tx=0, ty=0, shear=0, zx=1, zy=1, fill_mode="constant", cval=0),
    dict(theta=0, tx=3.5, ty=0, shear=0, zx=1, zy=1, fill_mode="nearest"),
    dict(theta=0, tx=0, ty=-4.2, shear=0, zx=1, zy=1, fill_mode="constant", cval=128),
    dict(theta=0, tx=0, ty=0, shear=12, zx=1, zy=1, fill_mode="nearest"),
    dict(theta=0, tx=0, ty=0, shear=0, zx=0.9, zy=1.1, fill_mode="nearest"),
    dict(theta=0, tx=0, ty=0, shear=0, zx=1.2, zy=0.85, fill_mode="constant", cval=0),
    dict(theta=8, tx=2, ty=-3, shear=-9, zx=1.05, zy=0.95, fill_mode="nearest"),
    dict(theta=-10, tx=-4.8, ty=4.8, shear=10, zx=0.9, zy=0.9, fill_mode="constant", cval=0),
]
x = img[:, :, None].astype(np.float32)
for i, case in enumerate(cases):
    kw = {k: v for k, v in case.items()}
    out = apply_affine_transform(
        x, theta=kw["theta"], tx=kw["tx"], ty=kw["ty"], shear=kw["shear"], zx=kw["zx"], zy=kw["zy"],
        row_axis=0, col_axis=1, channel_axis=2, fill_mode=kw["fill_mode"], cval=kw.get("cval", 0.0), order=1,
    )
    out = np.clip(np.round(out[:, :, 0]), 0, 255).astype(np.uint8)
    name = f"case-{i}.png"
    Image.fromarray(out, mode="L").save(os.path.join(OUT, name))
    case["file"] = name
    case.setdefault("cval", 0)
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)
print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")
