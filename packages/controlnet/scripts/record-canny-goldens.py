"""Records OpenCV's grey conversion and Canny edges on deterministic test images: the goldens that
packages/controlnet/src/preprocessors/canny-preprocessor.test.ts compares our canny with, bit for bit.

Regenerate from the repository root with Debian's OpenCV (python3-opencv 4.6.0, built without IPP,
whose Canny would differ):

    /usr/bin/python3 packages/controlnet/scripts/record-canny-goldens.py

It writes, under packages/controlnet/test-fixtures/preprocessors/canny/:
- one PNG per test image (RGB, lossless), the frames the test feeds our canny;
- goldens.json: per image its grey (cv2.cvtColor RGB2GRAY, base64 bytes) and per threshold pair
  the edge map of cv2.Canny(grey, low, high) (aperture 3, L1 gradient), bit-packed (numpy
  packbits, big-endian bit order, row-major) in base64.
"""
import base64
import json
import os

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test-fixtures", "preprocessors", "canny")

# (low, high): the forks' default, a looser pair, a very low pair, and low == high.
THRESHOLDS = [(100, 200), (50, 100), (10, 30), (120, 120)]


def check_grey_formula():
    """OpenCV 4's RGB2GRAY for 8-bit input is fixed-point with 15 fractional bits:
    (9798 R + 19235 G + 3735 B + 16384) >> 15 (OpenCV 3's 14-bit coefficients differ on 43,864 of
    the 2^24 colours). Checked here on all 2^24 colours, so the TypeScript port can rely on it."""
    values = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=-1).astype(np.uint8)
    image = rgb.reshape(4096, 4096, 3)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).reshape(-1).astype(np.uint32)
    r, g, b = (rgb[:, channel].astype(np.uint32) for channel in range(3))
    expected = (9798 * r + 19235 * g + 3735 * b + 16384) >> 15
    assert np.array_equal(grey, expected), "cv2 RGB2GRAY is not the fixed-point formula"


def test_image(width, height, seed):
    """Shapes (hard edges, diagonals, a circle), smooth gradients and noise of growing strength."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3), dtype=np.float64)
    image[..., 0] = 255 * x / max(width - 1, 1)
    image[..., 1] = 255 * y / max(height - 1, 1)
    image[..., 2] = 128 + 100 * np.sin(x / 5.0) * np.cos(y / 7.0)
    # A filled rectangle, a circle, a diagonal band and a thin line.
    rectangle = (x >= width * 0.1) & (x < width * 0.4) & (y >= height * 0.15) & (y < height * 0.5)
    image[rectangle] = [230, 40, 40]
    circle = (x - width * 0.65) ** 2 + (y - height * 0.6) ** 2 < (min(width, height) * 0.22) ** 2
    image[circle] = [30, 200, 90]
    band = np.abs((x - y * width / height) - width * 0.2) < 3
    image[band] = image[band] * 0.3 + 170
    image[(x.astype(int) == int(width * 0.85))] = [250, 250, 250]
    # Noise that grows from left (none) to right (strong): clean plateaus and noisy areas.
    strength = 40 * (x / max(width - 1, 1)) ** 2
    image += rng.normal(0, 1, size=image.shape) * strength[..., None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def main():
    check_grey_formula()
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for width, height, seed in [(64, 64, 1), (96, 48, 2)]:
        rgb = test_image(width, height, seed)
        name = f"frame-{width}x{height}.png"
        path = os.path.join(OUT, name)
        # OpenCV writes BGR; read back to be sure the file holds exactly these pixels.
        cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        assert np.array_equal(cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), rgb)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        edges = []
        for low, high in THRESHOLDS:
            edge_map = cv2.Canny(grey, low, high)
            assert set(np.unique(edge_map)) <= {0, 255}
            packed = np.packbits(edge_map.reshape(-1) == 255)
            edges.append(
                {
                    "low_threshold": low,
                    "high_threshold": high,
                    "edge_pixels": int((edge_map == 255).sum()),
                    "edges": base64.b64encode(packed.tobytes()).decode("ascii"),
                }
            )
        cases.append(
            {
                "image": name,
                "width": width,
                "height": height,
                "grey": base64.b64encode(grey.tobytes()).decode("ascii"),
                "canny": edges,
            }
        )
    goldens = {"opencv": cv2.__version__, "cases": cases}
    with open(os.path.join(OUT, "goldens.json"), "w") as file:
        json.dump(goldens, file, indent=1)
        file.write("\n")
    for case in cases:
        print(case["image"], [(e["low_threshold"], e["high_threshold"], e["edge_pixels"]) for e in case["canny"]])


if __name__ == "__main__":
    main()
