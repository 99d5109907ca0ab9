"""Makes the tiny random-weight ONNX models the depth and lineart preprocessors' tests load (a few
hundred bytes each; seeded, so the weights are the same on every run).

Regenerate from the repository root with Debian's python3 (python3-onnx, python3-numpy):

    /usr/bin/python3 packages/controlnet/scripts/make-preprocessor-fixtures.py

then re-record the expected outputs (record-onnx-preprocessor-goldens.py, which needs onnxruntime).

It writes, under packages/controlnet/test-fixtures/preprocessors/:
- depth/model.onnx: pixel_values [1, 3, height, width] (symbolic) -> Conv 3x3 (3->4) -> Relu ->
  Conv 3x3 (4->1) -> Squeeze -> predicted_depth [1, height, width] (Depth Anything's names and
  output rank), with depth/preprocessor.json: a non-square input_size and ImageNet mean/std;
- lineart/model.onnx: input [1, 3, 32, 32] (fixed) -> Conv 3x3 (3->4) -> Relu -> Conv 3x3 (4->1)
  -> Sigmoid -> output [1, 1, 32, 32]; no preprocessor.json (the fixed dims win over the default
  input size; pixels in 0..1);
- not-an-image-model.onnx: y = Relu(x) on [1, 4, 8, 8], which both preprocessors must refuse.
"""
import json
import os

import numpy as np
from onnx import TensorProto, checker, helper, numpy_helper, save

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "test-fixtures", "preprocessors")
F32 = TensorProto.FLOAT


def conv_weights(rng, name, out_channels, in_channels):
    weight = (rng.standard_normal((out_channels, in_channels, 3, 3)) * 0.4).astype(np.float32)
    bias = (rng.standard_normal((out_channels,)) * 0.1).astype(np.float32)
    return [numpy_helper.from_array(weight, f"{name}.weight"), numpy_helper.from_array(bias, f"{name}.bias")]


def conv(name, source, target):
    return helper.make_node("Conv", [source, f"{name}.weight", f"{name}.bias"], [target], kernel_shape=[3, 3], pads=[1, 1, 1, 1])


def save_model(folder, graph):
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="streamdiffusion-ts tests")
    proto.ir_version = 7
    checker.check_model(proto)
    os.makedirs(os.path.join(OUT, folder), exist_ok=True)
    save(proto, os.path.join(OUT, folder, "model.onnx"))


def depth_model():
    rng = np.random.default_rng(6)
    nodes = [
        conv("conv1", "pixel_values", "hidden"),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        conv("conv2", "activated", "depth4d"),
        helper.make_node("Squeeze", ["depth4d", "channel_axis"], ["predicted_depth"]),
    ]
    initializers = conv_weights(rng, "conv1", 4, 3) + conv_weights(rng, "conv2", 1, 4)
    initializers.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "channel_axis"))
    graph = helper.make_graph(
        nodes,
        "tiny-depth",
        [helper.make_tensor_value_info("pixel_values", F32, [1, 3, "height", "width"])],
        [helper.make_tensor_value_info("predicted_depth", F32, [1, "height", "width"])],
        initializer=initializers,
    )
    save_model("depth", graph)
    config = {"input_size": {"width": 24, "height": 16}, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    with open(os.path.join(OUT, "depth", "preprocessor.json"), "w") as file:
        json.dump(config, file, indent=2)
        file.write("\n")


def lineart_model():
    rng = np.random.default_rng(7)
    nodes = [
        conv("conv1", "input", "hidden"),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        conv("conv2", "activated", "logits"),
        helper.make_node("Sigmoid", ["logits"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-lineart",
        [helper.make_tensor_value_info("input", F32, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("output", F32, [1, 1, 32, 32])],
        initializer=conv_weights(rng, "conv1", 4, 3) + conv_weights(rng, "conv2", 1, 4),
    )
    save_model("lineart", graph)


def not_an_image_model():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "not-an-image-model",
        [helper.make_tensor_value_info("x", F32, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", F32, [1, 4, 8, 8])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="streamdiffusion-ts tests")
    proto.ir_version = 7
    checker.check_model(proto)
    save(proto, os.path.join(OUT, "not-an-image-model.onnx"))


if __name__ == "__main__":
    depth_model()
    lineart_model()
    not_an_image_model()
    for folder in ("depth", "lineart"):
        print(folder, os.path.getsize(os.path.join(OUT, folder, "model.onnx")), "bytes")
