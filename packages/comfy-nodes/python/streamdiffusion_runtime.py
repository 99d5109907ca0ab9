"""The runtime of the StreamDiffusion node pack (hand-written; copied into every generated pack).

It starts the Node.js sidecar (or attaches to a running one), speaks its framed protocol over one
persistent connection, checks the schema hash the pack was generated with, turns node inputs into
sidecar requests, and moves frames as uint8 RGB (converted to and from ComfyUI's float IMAGE here).
Only the sample and IP-Adapter paths need torch; everything else is plain Python.
"""
from __future__ import annotations

import atexit
import base64
import collections
import json
import logging
import os
import shlex
import shutil
import socket
import struct
import subprocess
import threading
from typing import Any

PROTOCOL_VERSION = 1
PACK_DIR = os.path.dirname(os.path.abspath(__file__))
log = logging.getLogger("streamdiffusion")

# ComfyUI's models/streamdiffusion and input folders, read when first needed (ComfyUI 0.3.64 never
# calls ComfyExtension.on_load); (None, None) outside ComfyUI.
_folders: tuple[str | None, str | None] | None = None


class SidecarError(RuntimeError):
    """The sidecar could not be started, died, or speaks another schema."""


class SidecarRequestError(ValueError):
    """The sidecar refused a request (a bad value: the message names it); `name` is its error class."""

    def __init__(self, message: str, name: str):
        super().__init__(message)
        self.name = name


def comfy_folders() -> tuple[str | None, str | None]:
    """ComfyUI's folders: model names are looked up in models/streamdiffusion, style image file names
    in the input folder."""
    global _folders
    if _folders is None:
        try:
            import folder_paths  # ComfyUI's own module

            _folders = (os.path.join(folder_paths.models_dir, "streamdiffusion"), folder_paths.get_input_directory())
        except ImportError:
            _folders = (None, None)
    return _folders


# ---------------------------------------------------------------------------------------------
# Framing: an 8-byte header (JSON length, binary length; big-endian uint32), the JSON, the binary.


def encode_message(payload: dict, binary: bytes = b"") -> bytes:
    text = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return struct.pack(">II", len(text), len(binary)) + text + binary


def read_exactly(stream, count: int) -> bytes:
    chunks = []
    left = count
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"the sidecar's output ended ({count - left} of {count} bytes read)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(stream) -> tuple[dict, bytes]:
    json_length, binary_length = struct.unpack(">II", read_exactly(stream, 8))
    payload = json.loads(read_exactly(stream, json_length).decode("utf-8"))
    return payload, read_exactly(stream, binary_length) if binary_length else b""


# ---------------------------------------------------------------------------------------------
# The sidecar process (or connection).


def sidecar_command() -> list[str]:
    """$STREAMDIFFUSION_SIDECAR_COMMAND, else node (or $STREAMDIFFUSION_NODE) with the bundled sidecar."""
    override = os.environ.get("STREAMDIFFUSION_SIDECAR_COMMAND")
    if override:
        return shlex.split(override)
    node = os.environ.get("STREAMDIFFUSION_NODE") or shutil.which("node")
    if node is None:
        raise SidecarError("StreamDiffusion needs Node.js 20 or newer to run its sidecar: install it (https://nodejs.org, or apt-get install nodejs) or set STREAMDIFFUSION_NODE to its path")
    script = os.path.join(PACK_DIR, "sidecar", "sidecar.mjs")
    if not os.path.exists(script):
        raise SidecarError(f"the bundled sidecar is missing ({script}): reinstall the pack with `streamdiffusion comfy install`")
    return [node, script]


class Sidecar:
    """One sidecar: started with pipes (it exits when its stdin closes) or attached over TCP."""

    def __init__(self, schema_hash: str):
        self.schema_hash = schema_hash
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.reader = None
        self.writer = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.next_id = 0
        address = os.environ.get("STREAMDIFFUSION_SIDECAR")
        if address:
            self._attach(address)
        else:
            self._start()
        hello, _ = self.call("hello", {})
        if hello.get("protocol") != PROTOCOL_VERSION or hello.get("schemaHash") != schema_hash:
            self.close()
            raise SidecarError(
                f"the sidecar speaks schema {hello.get('schemaHash')} (protocol {hello.get('protocol')}) but these nodes were generated for {schema_hash} "
                f"(protocol {PROTOCOL_VERSION}): regenerate the pack with the same version (`streamdiffusion comfy install <ComfyUI dir>`)"
            )

    def _start(self) -> None:
        command = sidecar_command()
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PACK_DIR)
        except OSError as error:
            raise SidecarError(f"could not start the StreamDiffusion sidecar ({' '.join(command)}): {error}") from error
        self.reader, self.writer = self.process.stdout, self.process.stdin
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        log.info("started the StreamDiffusion sidecar (pid %s)", self.process.pid)

    def _attach(self, address: str) -> None:
        if not address.startswith("tcp://"):
            raise SidecarError(f"STREAMDIFFUSION_SIDECAR: expected tcp://host:port, got {address!r}")
        host, _, port = address[len("tcp://"):].rpartition(":")
        try:
            self.sock = socket.create_connection((host, int(port)), timeout=10)
        except (OSError, ValueError) as error:
            raise SidecarError(f"could not attach to the StreamDiffusion sidecar at {address}: {error}") from error
        self.sock.settimeout(None)
        self.reader = self.sock.makefile("rb")
        self.writer = self.sock.makefile("wb")

    def _drain_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        try:
            for raw in self.process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self.stderr_tail.append(line)
                log.info("%s", line)
        except (OSError, ValueError):
            pass  # close() closed the pipe after the sidecar exited

    def alive(self) -> bool:
        return self.sock is not None or (self.process is not None and self.process.poll() is None)

    def call(self, method: str, params: dict, binary: bytes = b"") -> tuple[dict, bytes]:
        with self.lock:
            self.next_id += 1
            request_id = self.next_id
            try:
                self.writer.write(encode_message({"id": request_id, "method": method, "params": params}, binary))
                self.writer.flush()
                answer, data = read_message(self.reader)
            except (OSError, EOFError, ValueError) as error:
                raise self._died(method, error) from error
        if answer.get("id") != request_id:
            raise SidecarError(f"the sidecar answered request {answer.get('id')} to request {request_id}")
        if not answer.get("ok"):
            error = answer.get("error", {})
            raise SidecarRequestError(error.get("message", "the sidecar failed without a message"), error.get("name", "Error"))
        return answer.get("result", {}), data

    def _died(self, method: str, error: Exception) -> SidecarError:
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        tail = " | ".join(list(self.stderr_tail)[-5:])
        return SidecarError(
            f"the StreamDiffusion sidecar stopped during {method} (exit code {code}; {error})"
            + (f"; its last words: {tail}" if tail else "")
            + ". The next prompt starts a new one."
        )

    def close(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()  # the sidecar exits when its stdin closes
        except OSError:
            pass
        if self.sock is not None:
            self.sock.close()
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for stream in (self.process.stdout, self.process.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass


_sidecar: Sidecar | None = None
_sidecar_lock = threading.Lock()


def sidecar(schema_hash: str) -> Sidecar:
    """The running sidecar, started (again) when there is none or the last one died."""
    global _sidecar
    with _sidecar_lock:
        if _sidecar is None or not _sidecar.alive():
            _sidecar = Sidecar(schema_hash)
        return _sidecar


def call(schema_hash: str, method: str, params: dict, binary: bytes = b"") -> tuple[dict, bytes]:
    global _sidecar
    current = sidecar(schema_hash)
    try:
        return current.call(method, params, binary)
    except SidecarError:
        with _sidecar_lock:
            if _sidecar is current:
                _sidecar = None
        raise


@atexit.register
def _close_sidecar() -> None:
    if _sidecar is not None:
        _sidecar.close()


# ---------------------------------------------------------------------------------------------
# Node inputs → sidecar requests.

def decode_inputs(inputs: dict, encodings: dict) -> dict:
    """The widget values as the schemas take them: "32,45" → [32, 45], JSON text → values, empty optional text → left out.
    Sockets (encoding "socket", set by the generator for every linked input) are not widget values."""
    values = {}
    for key, value in inputs.items():
        encoding = encodings.get(key, "plain")
        if encoding == "socket":
            continue
        if encoding == "int-list":
            try:
                values[key] = [int(part) for part in str(value).replace(" ", "").split(",") if part != ""]
            except ValueError:
                raise ValueError(f"{key}: expected integers separated by commas (like 32,45), got {value!r}") from None
        elif encoding == "json":
            if str(value).strip() == "":
                continue
            try:
                values[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"{key}: expected JSON, got {value!r} ({error.msg} at character {error.pos})") from None
        elif encoding == "optional-text":
            if str(value).strip() != "":
                values[key] = value
        else:
            values[key] = value
    return values


def _resolve(path: str, folder: str | None, *candidates: str) -> str:
    """An absolute path: `path` as given when absolute (or outside ComfyUI), else the first of the
    names (`path` itself, then `candidates`) that exists in `folder`, else `path` in `folder`."""
    if os.path.isabs(path) or folder is None:
        return os.path.abspath(path)
    joined = [os.path.join(folder, name) for name in (path, *candidates)]
    return next((candidate for candidate in joined if os.path.exists(candidate)), joined[0])


def resolve_model(path: str) -> str:
    """An absolute model folder: as given, or a name in ComfyUI's models/streamdiffusion folder
    (a Hugging Face id `owner/name` also as `owner--name`, the way `models pull` saves it)."""
    return _resolve(path, comfy_folders()[0], *([path.replace("/", "--")] if "/" in path else []))


def resolve_input(path: str) -> str:
    """An absolute image file: as given, or a name in ComfyUI's input folder."""
    return _resolve(path, comfy_folders()[1])


def resolve_lora(path: str) -> str:
    """An absolute LoRA file: as given, or a name ComfyUI finds among its LoRA folders (models/loras,
    and those extra_model_paths.yaml adds), else a name in models/loras."""
    models_dir = comfy_folders()[0]
    if os.path.isabs(path) or models_dir is None:
        return os.path.abspath(path)
    try:
        import folder_paths  # ComfyUI's own module

        found = folder_paths.get_full_path("loras", path)
    except ImportError:
        found = None
    return found or os.path.join(os.path.dirname(models_dir), "loras", path)


# The wrapper fields that name model folders or files; resolved like the load node's model.
MODEL_FIELDS = ("model_id", "preprocessor_model", "ipadapter_model_path", "image_encoder_path")


def resolve_paths(values: dict) -> dict:
    resolved = {key: resolve_model(value) if key in MODEL_FIELDS else value for key, value in values.items()}
    if isinstance(resolved.get("style_image"), str):
        resolved["style_image"] = resolve_input(resolved["style_image"])
    return resolved


def image_to_frames(image) -> tuple[bytes, int, int, int]:
    """ComfyUI IMAGE (float BHWC in 0..1) → uint8 RGB bytes, frames, height, width."""
    import torch

    frames = (image[..., :3].clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()
    count, height, width, _ = frames.shape
    return frames.numpy().tobytes(), count, height, width


def frames_to_image(data: bytes, count: int, height: int, width: int):
    """uint8 RGB bytes → ComfyUI IMAGE (float BHWC in 0..1)."""
    import torch

    frames = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(count, height, width, 3)
    return frames.to(torch.float32) / 255.0


def sample_frames(schema_hash: str, handle: dict, data: bytes, count: int, height: int, width: int) -> tuple[dict, bytes]:
    """Frames (uint8 RGB) through a pipeline, named by its handle. A sidecar that does not know the
    handle (it started after the load: a crash, a restart) is sent the load request once, then the frames."""
    params = {"handle": handle["handle"], "hot": handle["hot"], "frames": count, "width": width, "height": height}
    try:
        return call(schema_hash, "sample", params, data)
    except SidecarRequestError as error:
        if error.name != "UnknownHandleError":
            raise
    call(schema_hash, "load", handle["request"])
    return call(schema_hash, "sample", params, data)


def run_node(action: str, inputs: dict, encodings: dict, schema_hash: str) -> tuple:
    """What each node does; returns its outputs."""
    values = decode_inputs(inputs, encodings)
    if action == "load":
        model = values.pop("model")
        device = values.pop("device")
        request = {
            "model": resolve_model(model),
            "device": device,
            "parameters": values,
            "controlnets": list(inputs.get("controlnet") or []),
            "ipadapters": [inputs["ipadapter"]] if inputs.get("ipadapter") else [],
            "loras": list(inputs.get("lora") or []),
        }
        result, _ = call(schema_hash, "load", request)
        return ({"handle": result["handle"], "request": request, "hot": {}, "width": result["width"], "height": result["height"]},)
    if action == "controlnet":
        return (list(inputs.get("controlnet") or []) + [resolve_paths(values)],)
    if action == "ipadapter":
        values = resolve_paths(values)
        pixels = inputs.get("style_image_pixels")
        if pixels is not None:
            data, _, height, width = image_to_frames(pixels[:1])
            values["style_image"] = {"width": width, "height": height, "channels": 3, "base64": base64.b64encode(data).decode("ascii")}
        if "style_image" not in values:
            raise ValueError("style_image: give a file path, or connect an IMAGE to style_image_pixels")
        return (values,)
    if action == "lora":
        return (list(inputs.get("lora") or []) + [{**values, "path": resolve_lora(values["path"])}],)
    if action == "update":
        handle = inputs["pipeline"]
        if inputs.get("lora") is not None:
            values["loras"] = list(inputs["lora"])
        result, _ = call(schema_hash, "check_update", {"parameters": values})
        return ({**handle, "hot": {**handle["hot"], **result["parameters"]}},)
    if action == "sample":
        handle = inputs["pipeline"]
        data, count, height, width = image_to_frames(inputs["image"])
        result, out = sample_frames(schema_hash, handle, data, count, height, width)
        return (frames_to_image(out, result["frames"], result["height"], result["width"]),)
    if action == "build_engines":
        handle = inputs["pipeline"]
        params = {"request": handle["request"], **values}
        if "loras" in handle["hot"]:
            params["loras"] = handle["hot"]["loras"]  # an update node's LoRAs replace the load node's
        result, _ = call(schema_hash, "build_engines", params)
        return (result["text"],)
    raise ValueError(f"unknown node action {action!r}")
