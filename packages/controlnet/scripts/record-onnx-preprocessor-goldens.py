"""Records what the depth and lineart preprocessors must give on fixed frames with the tiny
fixture models, computed independently of our TypeScript: the models run in Python's onnxruntime
and the documented pre- and post-processing is done here in numpy.

Regenerate from the repository root, after make-preprocessor-fixtures.py, with a Python that has
numpy and onnxruntime (this repository's export venv does):

    /work/sdx-venv/bin/python packages/controlnet/scripts/record-onnx-preprocessor-goldens.py

It writes packages/controlnet/test-fixtures/preprocessors/onnx-goldens.json: per model, the frame
(raw RGB bytes, base64, already at the model's input size so no resizing is involved), the raw
model output (float32 little-endian, base64) and the expected grey control image (bytes, base64)
for invert false and true.
"""
import base64
import json
import os

import numpy as np
import onnxruntime

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "test-fixtures", "preprocessors")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def frame(width, height):
    """Pure integer arithmetic (no RNG), so any numpy makes the same pixels."""
    y, x, c = np.mgrid[0:height, 0:width, 0:3]
    return ((x * 37 + y * 91 + c * 53 + ((x * y) % 17) * 13 + (x // 4 + y // 3) * 29) % 256).astype(np.uint8)


def normalised(rgb, mean, std):
    # (pixel / 255 - mean) / std in float64, then float32: what the TypeScript side feeds.
    values = rgb.astype(np.float64) / 255.0
    values = (values - np.array(mean)) / np.array(std)
    return values.transpose(2, 0, 1)[None].astype(np.float32)


def rounded(values):
    """Round half up, as JavaScript's Math.round does for non-negative values."""
    return np.floor(values + 0.5).astype(np.uint8)


def depth_grey(output):
    values = output.astype(np.float64)
    span = values.max() - values.min()
    return rounded((values - values.min()) / span * 255.0) if span > 0 else np.zeros(values.shape, np.uint8)


def lineart_grey(output):
    return rounded(np.clip(output.astype(np.float64), 0.0, 1.0) * 255.0)


def record(name, width, height, mean, std, to_grey):
    session = onnxruntime.InferenceSession(os.path.join(FIXTURES, name, "model.onnx"), providers=["CPUExecutionProvider"])
    rgb = frame(width, height)
    (output,) = session.run(None, {session.get_inputs()[0].name: normalised(rgb, mean, std)})
    plane = output.reshape(output.shape[-2], output.shape[-1])
    grey = to_grey(plane)
    return {
        "model": f"{name}/model.onnx",
        "width": width,
        "height": height,
        "frame": base64.b64encode(rgb.tobytes()).decode("ascii"),
        "output_dims": list(output.shape),
        "output": base64.b64encode(plane.astype("<f4").tobytes()).decode("ascii"),
        "grey": base64.b64encode(grey.tobytes()).decode("ascii"),
        "grey_inverted": base64.b64encode((255 - grey).tobytes()).decode("ascii"),
    }


def main():
    goldens = {
        "onnxruntime": onnxruntime.__version__,
        # depth/preprocessor.json: input_size 24x16, ImageNet mean/std; per-frame min-max.
        "depth": record("depth", 24, 16, IMAGENET_MEAN, IMAGENET_STD, depth_grey),
        # lineart: fixed 32x32 input, pixels in 0..1, output range [0, 1].
        "lineart": record("lineart", 32, 32, [0, 0, 0], [1, 1, 1], lineart_grey),
    }
    with open(os.path.join(FIXTURES, "onnx-goldens.json"), "w") as file:
        json.dump(goldens, file, indent=1)
        file.write("\n")
    for name in ("depth", "lineart"):
        grey = np.frombuffer(base64.b64decode(goldens[name]["grey"]), np.uint8)
        print(name, goldens[name]["output_dims"], "grey range", grey.min(), grey.max(), "mean", round(float(grey.mean()), 1))


if __name__ == "__main__":
    main()
