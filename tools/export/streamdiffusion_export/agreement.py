"""onnxruntime against PyTorch, as the golden recorders measure it (ControlNet and IP-Adapter goldens)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def cpu_session(path: Path) -> Any:
    """An onnxruntime session of a model file on the CPU provider."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@dataclass
class Agreement:
    """The largest differences and reference magnitudes per case and output; differences over the
    tolerance (relative_tolerance x max(1, max|reference|)) become failures."""

    relative_tolerance: float
    diffs: dict[str, dict[str, float]] = field(default_factory=dict)
    magnitudes: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    #: The largest allowed difference seen.
    tolerance: float = 0.0

    def check(self, case: str, what: str, expected: np.ndarray, actual: np.ndarray, magnitude_key: str = "") -> float:
        """Records one comparison (repeated ones keep the largest) and returns its difference; the
        reference's magnitude is kept under ``magnitude_key`` (default: ``what``)."""
        if actual.shape != expected.shape:
            raise RuntimeError(f"{case} {what}: onnxruntime shape {actual.shape} != {expected.shape}")
        diff = float(np.max(np.abs(actual.astype(np.float32) - expected)))
        magnitude = float(np.max(np.abs(expected)))
        allowed = self.relative_tolerance * max(magnitude, 1.0)
        self.tolerance = max(self.tolerance, allowed)
        diffs = self.diffs.setdefault(case, {})
        magnitudes = self.magnitudes.setdefault(case, {})
        key = magnitude_key or what
        diffs[what] = max(diff, diffs.get(what, 0.0))
        magnitudes[key] = max(magnitude, magnitudes.get(key, 0.0))
        if not np.isfinite(diff) or diff > allowed:
            self.failures.append(f"{case} {what}: max abs diff {diff:.3g} > {allowed:.3g}")
        return diff

    def summary(self, case: str) -> dict[str, Any]:
        """The per-case keys every golden section carries."""
        from .goldens import _nice_ceiling

        allowed = self.relative_tolerance * max(1.0, max(self.magnitudes[case].values()))
        return {
            "onnxruntime_max_abs_diff": self.diffs[case],
            "output_max_abs": self.magnitudes[case],
            "tolerance": {"abs": _nice_ceiling(allowed)},
        }
