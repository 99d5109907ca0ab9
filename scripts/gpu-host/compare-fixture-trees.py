#!/usr/bin/env python3
"""Compares a regenerated fixtures/ tree with the committed one: which files are byte-identical,
and for golden files (JSON, optionally .gz) the largest difference of every stored tensor.

    python3 scripts/gpu-host/compare-fixture-trees.py <committed fixtures/> <regenerated fixtures/>

Used on the GPU host after `make-fixtures.sh` ran in a copy (scripts/gpu-host/run-foundation.sh):
proves the documented command still makes what is committed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# The export tool's own golden-file helpers (tools/export, beside this script's repository root).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "export"))
from streamdiffusion_export.tensor_json import decode_tensor, read_text_maybe_gzip  # noqa: E402


def tensors(value: Any, where: str = "") -> dict[str, np.ndarray]:
    """Every encoded tensor ({dtype, dims, data}) inside a golden file, by its JSON path."""
    found: dict[str, np.ndarray] = {}
    if isinstance(value, dict):
        if {"dtype", "dims", "data"} <= value.keys() and isinstance(value["data"], str):
            found[where] = decode_tensor(value).astype(np.float64).ravel()
        else:
            for key, item in value.items():
                found.update(tensors(item, f"{where}/{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(tensors(item, f"{where}[{index}]"))
    return found


def main() -> int:
    committed, regenerated = Path(sys.argv[1]), Path(sys.argv[2])
    files = sorted({p.relative_to(committed) for p in committed.rglob("*") if p.is_file()} | {p.relative_to(regenerated) for p in regenerated.rglob("*") if p.is_file()})
    identical = 0
    for name in files:
        a, b = committed / name, regenerated / name
        if not a.exists() or not b.exists():
            print(f"{'only committed' if a.exists() else 'only regenerated':16}  {name}")
            continue
        if hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest():
            identical += 1
            continue
        if name.suffix == ".json" or name.suffixes[-2:] == [".json", ".gz"]:
            ours, theirs = tensors(json.loads(read_text_maybe_gzip(a))), tensors(json.loads(read_text_maybe_gzip(b)))
            worst = max((float(np.abs(ours[k] - theirs[k]).max()) for k in ours.keys() & theirs.keys() if ours[k].shape == theirs[k].shape and ours[k].size), default=0.0)
            mismatched = sorted(k for k in ours.keys() ^ theirs.keys()) + sorted(k for k in ours.keys() & theirs.keys() if ours[k].shape != theirs[k].shape)
            print(f"{'differs':16}  {name}: {len(ours)} tensors, max abs diff {worst:.3g}{f', not comparable: {mismatched[:3]}' if mismatched else ''}")
        else:
            print(f"{'differs':16}  {name} ({a.stat().st_size} vs {b.stat().st_size} bytes)")
    print(f"{identical} of {len(files)} files byte-identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
