"""Refits a refittable TensorRT engine with the weights of an ONNX file (the UNet with a LoRA set
merged in): the engine's layers, tactics and shape profiles stay, only its weights change, so a new
LoRA costs a refit (seconds) instead of a rebuild (minutes).

    python3 refit_engine.py --engine base/engine.plan --onnx merged/model.onnx --output out/engine.plan

Needs TensorRT's Python package (`tensorrt`, 10.0 or newer: OnnxParserRefitter) and the GPU the
engine was built for. Prints one JSON object per line on stdout: {"event": "loaded" | "refitted" |
"saved" | "error", ...}; exits 0 when the engine was written, 3 when TensorRT's Python package is
missing, 1 for any other failure. @streamdiffusion/tensorrt runs it (refitEngine).
"""
import argparse
import json
import os
import sys
import time

TENSORRT_MISSING = 3


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def fail(message: str, code: int = 1) -> None:
    emit("error", message=message)
    sys.exit(code)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Refit a refittable TensorRT engine with an ONNX file's weights.")
    parser.add_argument("--engine", required=True, help="the refittable engine (built with --refit)")
    parser.add_argument("--onnx", required=True, help="the ONNX file with the new weights (same graph the engine was built from)")
    parser.add_argument("--output", required=True, help="where to write the refitted engine")
    args = parser.parse_args(argv)

    try:
        import tensorrt as trt
    except ImportError as error:
        fail(f"TensorRT's Python package is not installed ({error}); install it with TensorRT (pip install tensorrt)", TENSORRT_MISSING)
    if not hasattr(trt, "OnnxParserRefitter"):
        fail(f"TensorRT {getattr(trt, '__version__', '?')} has no OnnxParserRefitter: refits from ONNX need TensorRT 10.0 or newer")

    logger = trt.Logger(trt.Logger.WARNING)
    started = time.monotonic()
    with open(args.engine, "rb") as file:
        engine = trt.Runtime(logger).deserialize_cuda_engine(file.read())
    if engine is None:
        fail(f"{args.engine}: TensorRT could not load this engine (built by another TensorRT version, or for another GPU?)")
    refitter = trt.Refitter(engine, logger)
    emit("loaded", engine=args.engine, weights=len(refitter.get_all_weights()), seconds=round(time.monotonic() - started, 3))

    started = time.monotonic()
    onnx_refitter = trt.OnnxParserRefitter(refitter, logger)
    if not onnx_refitter.refit_from_file(args.onnx):
        errors = [str(onnx_refitter.get_error(index)) for index in range(onnx_refitter.num_errors)]
        fail(f"{args.onnx}: its weights do not fit the engine: " + "; ".join(errors or ["no error message"]))
    if not refitter.refit_cuda_engine():
        missing = refitter.get_missing_weights()
        fail(f"the refit left weights unset ({len(missing)}: {', '.join(list(missing)[:5])}); was the engine built with --refit?")
    emit("refitted", seconds=round(time.monotonic() - started, 3))

    serialized = engine.serialize()
    temporary = f"{args.output}.partial"
    with open(temporary, "wb") as file:
        # IHostMemory is a buffer: written as it is, not copied into a bytes object (an engine is gigabytes).
        file.write(serialized)
    os.replace(temporary, args.output)
    emit("saved", output=args.output, bytes=os.path.getsize(args.output))


if __name__ == "__main__":
    main(sys.argv[1:])
