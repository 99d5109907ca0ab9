"""Tensors as JSON objects: ``{"dtype": "float32", "dims": [...], "data": "<base64 little-endian>"}``."""

from __future__ import annotations

import base64
from pathlib import Path
import json
import re
from typing import Any

import numpy as np

_NUMPY_DTYPES: dict[str, str] = {
    "float32": "<f4",
    "float16": "<f2",
    "int32": "<i4",
    "int64": "<i8",
}


def encode_tensor(array: np.ndarray) -> dict[str, Any]:
    """Encodes a numpy array; the dtype must be float32, float16, int32 or int64."""
    name = str(array.dtype)
    if name not in _NUMPY_DTYPES:
        raise ValueError(f"cannot encode dtype {name}; expected one of {', '.join(_NUMPY_DTYPES)}")
    data = np.ascontiguousarray(array, dtype=np.dtype(_NUMPY_DTYPES[name])).tobytes()
    return {"dtype": name, "dims": [int(size) for size in array.shape], "data": base64.b64encode(data).decode("ascii")}


def decode_tensor(encoded: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_tensor`."""
    dtype = np.dtype(_NUMPY_DTYPES[encoded["dtype"]])
    array = np.frombuffer(base64.b64decode(encoded["data"]), dtype=dtype)
    return array.reshape(encoded["dims"]).astype(dtype.newbyteorder("="))


_NUMBER_LIST = re.compile(r"\[\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?:,\s*-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)*)\s*\]")


def dumps_json(data: Any) -> str:
    """Indented JSON whose lists of plain numbers stay on one line (token ids, dims)."""
    text = json.dumps(data, indent=1, ensure_ascii=False)
    return (
        _NUMBER_LIST.sub(lambda match: "[" + ", ".join(part.strip() for part in match.group(1).split(",")) + "]", text)
        + "\n"
    )


def write_text_maybe_gzip(out: Path, text: str) -> int:
    """Writes ``text`` to ``out``, gzip-compressed when the name ends in ``.gz`` (goldens of mostly
    float data, to keep the fixtures under their 10 MB budget; level 9 and mtime 0, so the same text
    gives the same bytes); returns the bytes written."""
    data = text.encode("utf-8")
    if out.suffix == ".gz":
        import gzip

        data = gzip.compress(data, compresslevel=9, mtime=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return len(data)


def read_text_maybe_gzip(path: Path) -> str:
    """Reads what :func:`write_text_maybe_gzip` wrote: decompressed when the name ends in ``.gz``."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    return data.decode("utf-8")
