"""Makes the tiny graphs the runtime layer's tests run (no weights; each file is a few hundred bytes).

Regenerate from this folder with:  python3 make-runtime-models.py   (needs the `onnx` package only;
Debian: apt-get install python3-onnx)
"""
from onnx import TensorProto, checker, helper, save


def model(name, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamdiffusion-ts tests")
    proto.ir_version = 8
    checker.check_model(proto)
    save(proto, f"{name}.onnx")


F32, F16, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64
value = helper.make_tensor_value_info

# y = relu(x): symbolic batch, fixed width 4.
model("relu", [helper.make_node("Relu", ["x"], ["y"])], [value("x", F32, ["batch", 4])], [value("y", F32, ["batch", 4])])

# fp16: sum = a + b, both [batch, 4].
model(
    "add-fp16",
    [helper.make_node("Add", ["a", "b"], ["sum"])],
    [value("a", F16, ["batch", 4]), value("b", F16, ["batch", 4])],
    [value("sum", F16, ["batch", 4])],
)

# int64 ids [1, 3] -> float32 (ids * 2), like a text encoder's token input.
model(
    "ids-to-float",
    [helper.make_node("Cast", ["ids"], ["as_float"], to=F32), helper.make_node("Add", ["as_float", "as_float"], ["doubled"])],
    [value("ids", I64, [1, 3])],
    [value("doubled", F32, [1, 3])],
)

# A long CPU run from a small input: 48 rounds of x = tanh(x @ x) on an [n, n] matrix.
nodes, current = [], "x"
for index in range(48):
    nodes.append(helper.make_node("MatMul", [current, current], [f"m{index}"]))
    nodes.append(helper.make_node("Tanh", [f"m{index}"], [f"t{index}"]))
    current = f"t{index}"
nodes.append(helper.make_node("Identity", [current], ["y"]))
model("slow-matmul", nodes, [value("x", F32, ["n", "n"])], [value("y", F32, ["n", "n"])])

# A UNet-like signature with the right names but a rank-3 "sample", for the model-folder checks.
model(
    "bad-rank-unet",
    [helper.make_node("Identity", ["sample"], ["out_sample"])],
    [value("sample", F32, ["batch", 4, "height"]), value("timestep", F32, ["batch"]), value("encoder_hidden_states", F32, ["batch", 77, 32])],
    [value("out_sample", F32, ["batch", 4, "height"])],
)

# Weights in an external file, as large exports have them: y = x * w, w = [1, 2, 3, 4] in
# external-weights.onnx_data (onnxruntime finds it beside the model when loading by path).
import numpy as np  # noqa: E402
from onnx import numpy_helper  # noqa: E402

weights = numpy_helper.from_array(np.array([1, 2, 3, 4], dtype=np.float32), name="w")
graph = helper.make_graph(
    [helper.make_node("Mul", ["x", "w"], ["y"])],
    "external-weights",
    [value("x", F32, ["batch", 4])],
    [value("y", F32, ["batch", 4])],
    initializer=[weights],
)
proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamdiffusion-ts tests")
proto.ir_version = 8
checker.check_model(proto)
save(proto, "external-weights.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
     location="external-weights.onnx_data", size_threshold=0)
