"""Prepares the Python process for diffusers and transformers on an offline host.

The GPU host has torch, transformers, onnx, onnxruntime, numpy, safetensors, huggingface_hub and
regex, but no ``diffusers`` package and no network: diffusers' source is brought alongside as a
folder (``.vendor/diffusers/src``). Importing diffusers from source has two snags there:

* ``diffusers/dependency_versions_check.py`` runs at import time and insists that the
  ``requests`` distribution is installed (huggingface_hub 1.x uses httpx, so it often is not).
* ``diffusers.utils`` imports ``PIL`` and ``requests`` at module level (image loading, remote
  decoding), code the export never calls.

When, and only when, one of those is missing, this module registers a permissive stand-in module
for it and skips the import-time distribution check. Real installations are always preferred.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

#: Repository root (tools/export/streamdiffusion_export/environment.py -> repo root).
REPO_ROOT = Path(__file__).resolve().parents[3]

#: Where the diffusers source is expected when the package is not installed.
VENDORED_DIFFUSERS_SRC = REPO_ROOT / ".vendor" / "diffusers" / "src"

#: Top-level modules that diffusers imports at module level but the export never uses.
_STUBBABLE_MODULES = ("requests", "PIL")

_stubbed: list[str] = []
_prepared = False


def set_offline_environment() -> None:
    """Keeps huggingface_hub, transformers and diffusers from touching the network."""
    for name, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("HF_HUB_DISABLE_TELEMETRY", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(name, value)


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _distribution_exists(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


class _StubType(type):
    """A class whose every unknown attribute is another stub class.

    Classes (not instances) are handed out so that module-level annotations such as
    ``str | PIL.Image.Image`` and ``list[PIL.Image.Image]`` still evaluate.
    """

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        child = _StubType(name, (), {"__module__": cls.__module__})
        setattr(cls, name, child)
        return child


class _StubModule(types.ModuleType):
    """A module whose every unknown attribute is a stub class."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        child = _StubType(name, (), {"__module__": self.__name__})
        setattr(self, name, child)
        return child


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves stub modules for a set of top-level packages and all their submodules."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = set(roots)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in self.roots:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []  # type: ignore[attr-defined]  # lets submodules resolve
        module.__version__ = "11.0.0"  # type: ignore[attr-defined]  # diffusers parses PIL's version
        module.__streamdiffusion_stub__ = True  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _install_stubs(names: list[str]) -> None:
    if not names:
        return
    sys.meta_path.append(_StubFinder(names))
    _stubbed.extend(names)


def _skip_diffusers_distribution_check() -> None:
    """Replaces diffusers.dependency_versions_check before diffusers imports it.

    The original module calls ``require_version_core`` for python, requests, filelock and numpy at
    import time; it fails when the ``requests`` distribution is absent although nothing we use
    needs it. ``dep_version_check`` keeps working for every other package.
    """
    name = "diffusers.dependency_versions_check"
    if name in sys.modules:
        return
    module = types.ModuleType(name)

    def dep_version_check(pkg: str, hint: str | None = None) -> None:
        if pkg in _stubbed:
            return
        from diffusers.dependency_versions_table import deps
        from diffusers.utils.versions import require_version

        require_version(deps[pkg], hint)

    module.dep_version_check = dep_version_check  # type: ignore[attr-defined]
    module.__streamdiffusion_stub__ = True  # type: ignore[attr-defined]
    sys.modules[name] = module


def prepare_diffusers_import() -> None:
    """Makes ``import diffusers`` work here: offline, from the vendored source if needed.

    Idempotent. Raises ImportError with a clear message when diffusers is nowhere to be found.
    """
    global _prepared
    if _prepared:
        return
    set_offline_environment()
    if not _module_exists("diffusers"):
        override = os.environ.get("STREAMDIFFUSION_DIFFUSERS_SRC")
        candidate = Path(override) if override else VENDORED_DIFFUSERS_SRC
        if not (candidate / "diffusers" / "__init__.py").is_file():
            raise ImportError(
                "diffusers is not installed and its source was not found at "
                f"{candidate}. Extract it there (see tools/export/README.md) or set "
                "STREAMDIFFUSION_DIFFUSERS_SRC to a folder that contains diffusers/__init__.py."
            )
        sys.path.insert(0, str(candidate))
        importlib.invalidate_caches()
    _install_stubs([name for name in _STUBBABLE_MODULES if not _module_exists(name)])
    if not all(_distribution_exists(name) for name in ("requests", "filelock", "numpy")):
        _skip_diffusers_distribution_check()
    _prepared = True


def stubbed_modules() -> list[str]:
    """Names of the top-level modules that were replaced by stand-ins in this process."""
    return list(_stubbed)


def _version_of(module_name: str) -> str:
    if module_name in _stubbed:
        return "stub (not installed)"
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - report any import failure as text
        return f"unavailable ({type(error).__name__}: {error})"
    return str(getattr(module, "__version__", "unknown"))


def describe_versions() -> dict[str, str]:
    """Versions of the libraries the tool relies on, for logs and golden files."""
    prepare_diffusers_import()
    versions = {"python": sys.version.split()[0]}
    for name in (
        "torch",
        "transformers",
        "diffusers",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "numpy",
        "safetensors",
        "huggingface_hub",
        "tokenizers",
        "regex",
        "requests",
        "PIL",
    ):
        versions[name] = _version_of(name)
    try:
        import torch

        versions["cuda_available"] = str(torch.cuda.is_available())
    except ImportError:
        pass
    return versions
