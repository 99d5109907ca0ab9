#!/usr/bin/env bash
# Prepare this Debian 12 machine to run a real ComfyUI 0.3.64 on CPU for integration tests.
# Idempotent: installs only the Debian packages that are missing (no PyPI, no venv).
# What Debian lacks (safetensors, einops, transformers, tokenizers, torchsde) is covered
# by the import stubs in ./stubs (see README.md).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in stubs/ or COMFYUI_DIR from the checks below

# Package -> why ComfyUI needs it (all imported on ComfyUI's startup path unless noted).
PACKAGES=(
  python3-torch        # torch 1.13.1 (CPU build)
  python3-torchvision  # comfy/ldm/cascade/stage_c_coder.py (via comfy.sd)
  python3-torchaudio   # audio nodes / ACE model (optional, but Debian has it)
  python3-numpy
  python3-pil          # LoadImage / SaveImage
  python3-yaml         # extra_model_paths.yaml
  python3-aiohttp      # HTTP server (pulls python3-yarl, python3-multidict)
  python3-scipy        # comfy/samplers.py
  python3-psutil       # comfy/model_management.py
  python3-tqdm         # comfy_execution/progress.py
  python3-requests     # app/frontend_management.py
  python3-packaging    # comfy_api/internal/api_registry.py
  python3-av           # comfy_api.latest (V3 node API) imports av; Debian has 10.0 (ComfyUI asks >=14.2)
  python3-alembic      # optional sqlite DB layer (pulls python3-sqlalchemy 1.4); silences a startup error
)

die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }

[ -r /etc/debian_version ] || die "this script expects Debian (found no /etc/debian_version)"
command -v dpkg-query >/dev/null || die "dpkg-query not found"
echo "Debian $(cat /etc/debian_version)"

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null; then
  SUDO=(sudo)
else
  SUDO=()
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    echo "  ok       $p $(dpkg-query -W -f='${Version}' "$p")"
  else
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && [ "${#SUDO[@]}" -eq 0 ]; then
    die "missing Debian packages (${missing[*]}) and not root / no sudo; run: apt-get install -y --no-install-recommends ${missing[*]}"
  fi
  echo "Installing missing Debian packages: ${missing[*]}"
  "${SUDO[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
  for p in "${missing[@]}"; do
    cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
      die "Debian package $p is not available from the configured apt sources"
    fi
    echo "  install  $p $cand"
  done
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}"
fi

[ -x "$PY" ] || die "$PY not found"
echo "python3: $("$PY" --version 2>&1) ($PY)"
"$PY" -c 'import torch; print("torch:", torch.__version__, "| cuda available:", torch.cuda.is_available())' \
  || die "torch does not import with $PY"

# Everything ComfyUI imports at startup must now resolve (real package or stub).
PYTHONPATH="$HERE/stubs" PYTHONNOUSERSITE=1 "$PY" - <<'EOF' || die "a required Python module does not import (see above)"
import importlib
mods = ["torch", "torchvision", "torchaudio", "numpy", "PIL", "yaml", "aiohttp", "yarl", "scipy",
        "psutil", "tqdm", "requests", "packaging", "av", "alembic", "sqlalchemy",
        "safetensors.torch", "einops", "transformers", "tokenizers", "torchsde"]
for m in mods:
    mod = importlib.import_module(m)
    origin = getattr(mod, "__file__", "") or ""
    kind = "stub" if "/stubs/" in origin else getattr(mod, "__version__", "")
    print(f"  import {m:<18} {kind}")
EOF

if command -v node >/dev/null; then
  echo "node: $(node --version)"
else
  echo "setup.sh: WARNING: node not found (start-comfyui.mjs needs Node >= 20)" >&2
fi

if [ -n "${COMFYUI_DIR:-}" ]; then
  [ -f "$COMFYUI_DIR/main.py" ] || die "COMFYUI_DIR=$COMFYUI_DIR has no main.py"
  echo "ComfyUI: $(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_DIR/comfyui_version.py") at $COMFYUI_DIR"
  (cd "$COMFYUI_DIR" && PYTHONPATH="$HERE/stubs" PYTHONNOUSERSITE=1 \
    "$PY" -c 'import sys; sys.argv = sys.argv[:1]; from comfy_api.latest import ComfyExtension, io; print("  import comfy_api.latest (ComfyExtension, io): ok")' 2>&1 | tail -n 3) \
    || die "comfy_api.latest does not import"
fi
echo "setup.sh: done"
