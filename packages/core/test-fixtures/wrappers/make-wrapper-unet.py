"""Makes wrapper-unet.onnx: a stand-in UNet with one extra input and one extra prompt token, so the
pipeline's wrapper composition can be checked to the last bit (no weights; a few hundred bytes).

    out_sample = extra_residual + mean(encoder_hidden_states[:, 77, :]) + 0 · sample

It has the tiny-sd-turbo fixture's text width (32) and latent channels (4); the wrapper tests put it
in a copy of that folder. Regenerate from this folder with:  python3 make-wrapper-unet.py
(needs the `onnx` package only; Debian: apt-get install python3-onnx)
"""
from onnx import TensorProto, checker, helper, save

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
value = helper.make_tensor_value_info
const = helper.make_tensor

nodes = [
    helper.make_node("Slice", ["encoder_hidden_states", "starts", "ends", "axes"], ["extra_token"]),
    helper.make_node("ReduceMean", ["extra_token"], ["token_mean"], axes=[1, 2], keepdims=1),
    helper.make_node("Unsqueeze", ["token_mean", "last_axis"], ["token_bias"]),
    helper.make_node("Mul", ["sample", "zero"], ["no_sample"]),
    helper.make_node("Add", ["extra_residual", "token_bias"], ["with_token"]),
    helper.make_node("Add", ["with_token", "no_sample"], ["out_sample"]),
]
initializers = [
    const("starts", I64, [1], [77]),
    const("ends", I64, [1], [78]),
    const("axes", I64, [1], [1]),
    const("last_axis", I64, [1], [3]),
    const("zero", F32, [], [0.0]),
]
inputs = [
    value("sample", F32, ["batch", 4, "height", "width"]),
    value("timestep", F32, ["batch"]),
    value("encoder_hidden_states", F32, ["batch", 78, 32]),
    value("extra_residual", F32, ["batch", 4, "height", "width"]),
]
graph = helper.make_graph(nodes, "wrapper-unet", inputs, [value("out_sample", F32, ["batch", 4, "height", "width"])], initializer=initializers)
proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="streamdiffusion-ts tests")
proto.ir_version = 8
checker.check_model(proto)
save(proto, "wrapper-unet.onnx")
