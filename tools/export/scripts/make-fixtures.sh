#!/usr/bin/env bash
# Regenerates every committed fixture under fixtures/ with tools/export (tiny ONNX model folders,
# ControlNets, IP-Adapters, LoRAs, and every golden: models, tokenizer, LCM scheduler, torch.randn,
# the Python original's stream), then checks that the full-size SD-Turbo export works. Not rewritten:
# the inputs tokenizer/prompts.json (hand-written) and images/*.png (node fixtures/images/make-*.mjs).
#
#   bash tools/export/scripts/make-fixtures.sh        # from the repository root
#
# Needs node (the size check) and python3 with torch, transformers, onnx, onnxruntime, numpy, safetensors, regex, and
# diffusers installed or its source at .vendor/diffusers/src. Runs offline. The stream goldens also
# need cumulo-autumn/StreamDiffusion's source (STREAMDIFFUSION_SRC); without it that one step is
# skipped and the committed goldens/stream-diffusion.json.gz is left as it is.
# Environment:
#   PYTHON          interpreter to use (default python3)
#   STREAMDIFFUSION_SRC     the original's source, the folder holding streamdiffusion/
#                           (default .vendor/StreamDiffusion/src; never committed)
#   STREAMDIFFUSION_COMMIT  its commit, recorded in the goldens when the source is not a git checkout
#   OUT             when set, fixtures/ is also packed into "$OUT/fixtures.tar.xz"
#   FIXTURE_DEVICE  device for the tiny exports (default cpu, so the traces match the CPU goldens)
#   SKIP_FULL_SIZE  set to 1 to skip the full-size SD-Turbo check
#   FULL_SIZE_DIR   where the full-size check writes (default /tmp/sdx-full-sd-turbo; never copied back)
set -euo pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false STREAMDIFFUSION_TRACEBACK=1

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$repo_root"
PYTHON=${PYTHON:-python3}
FIXTURE_DEVICE=${FIXTURE_DEVICE:-cpu}
STREAMDIFFUSION_SRC=${STREAMDIFFUSION_SRC:-.vendor/StreamDiffusion/src}
export PYTHONPATH="$repo_root/tools/export${PYTHONPATH:+:$PYTHONPATH}"
tool() { "$PYTHON" -m streamdiffusion_export "$@"; }
section() { printf '\n== %s\n' "$*"; }

section "environment"
if ! "$PYTHON" -c 'import diffusers' >/dev/null 2>&1 && [[ ! -f .vendor/diffusers/src/diffusers/__init__.py ]]; then
  echo "error: diffusers is neither installed nor at .vendor/diffusers/src (see tools/export/README.md)" >&2
  exit 1
fi
tool versions

work=$(mktemp -d "${TMPDIR:-/tmp}/sdx-fixtures.XXXXXX")
trap 'rm -rf "$work"' EXIT

section "tiny-sd-turbo (SD 2.1 architecture, TAESD, fp32, dynamic shapes, fused attention)"
# Every golden is remade below; the original's stream goldens only when its source is there (last step).
rm -rf fixtures/models/tiny-sd-turbo fixtures/models/tiny-sd15-fp16
find fixtures/goldens -type f ! -name stream-diffusion.json.gz -delete 2>/dev/null || true
# Fused attention here (MultiHeadAttention runs in fp32 on the CPU), plain in the fp16 fixture: CI tests both.
tool random-init --arch tiny-sd-turbo --vae taesd --dtype fp32 --seed 0 --device "$FIXTURE_DEVICE" --attention fused \
  --out fixtures/models/tiny-sd-turbo --save-checkpoint "$work/tiny-sd-turbo-checkpoint"
tool goldens "$work/tiny-sd-turbo-checkpoint" fixtures/models/tiny-sd-turbo --out fixtures/goldens/tiny-sd-turbo.json.gz

section "tiny-sd15-fp16 (SD 1.5 architecture, KL VAE, fp16, dynamic shapes)"
if ! tool random-init --arch tiny-sd15 --vae kl --dtype fp16 --seed 0 --device "$FIXTURE_DEVICE" \
  --out fixtures/models/tiny-sd15-fp16 --save-checkpoint "$work/tiny-sd15-checkpoint"; then
  # Some torch builds cannot run fp16 on the CPU; trace on the GPU instead.
  echo "fp16 export on $FIXTURE_DEVICE failed; retrying with --device auto" >&2
  rm -rf fixtures/models/tiny-sd15-fp16 "$work/tiny-sd15-checkpoint"
  tool random-init --arch tiny-sd15 --vae kl --dtype fp16 --seed 0 --device auto \
    --out fixtures/models/tiny-sd15-fp16 --save-checkpoint "$work/tiny-sd15-checkpoint"
fi
tool goldens "$work/tiny-sd15-checkpoint" fixtures/models/tiny-sd15-fp16 --out fixtures/goldens/tiny-sd15-fp16.json.gz

section "micro-sd-turbo with ControlNet inputs, two ControlNets (3 and 6 channels), ControlNet goldens"
rm -rf fixtures/models/micro-sd-turbo-controlnet fixtures/controlnets
tool random-init --arch micro-sd-turbo --vae taesd --dtype fp32 --seed 0 --device "$FIXTURE_DEVICE" --attention fused \
  --controlnet-inputs --short-names \
  --out fixtures/models/micro-sd-turbo-controlnet --save-checkpoint "$work/micro-sd-turbo-checkpoint"
tool controlnet --random-init --arch micro-sd-turbo --conditioning-channels 3 --seed 10 --device "$FIXTURE_DEVICE" \
  --attention fused --short-names --out fixtures/controlnets/micro-canny --save-checkpoint "$work/micro-canny-checkpoint"
tool controlnet --random-init --arch micro-sd-turbo --conditioning-channels 6 --seed 20 --device "$FIXTURE_DEVICE" \
  --attention fused --short-names --out fixtures/controlnets/micro-6ch --save-checkpoint "$work/micro-6ch-checkpoint"
tool controlnet-goldens "$work/micro-sd-turbo-checkpoint" fixtures/models/micro-sd-turbo-controlnet \
  --controlnet "$work/micro-canny-checkpoint" fixtures/controlnets/micro-canny \
  --controlnet "$work/micro-6ch-checkpoint" fixtures/controlnets/micro-6ch --out fixtures/goldens/controlnet.json.gz

section "IP-Adapter: micro-sd-turbo with a random regular adapter, a Plus projection sharing its attention, the same UNet with ControlNet inputs, goldens"
rm -rf fixtures/models/micro-sd-turbo-ipadapter fixtures/ip-adapters
# The same base weights as micro-sd-turbo-controlnet (seed 0); the adapter from seed 30, its image encoder from 31.
tool random-init --arch micro-sd-turbo --vae taesd --dtype fp32 --seed 0 --device "$FIXTURE_DEVICE" --attention fused \
  --compact-graph --ip-adapter-random regular --ip-adapter-seed 30 --save-ip-adapter "$work/micro-regular-ip-adapter" \
  --out fixtures/models/micro-sd-turbo-ipadapter --save-checkpoint "$work/micro-sd-turbo-ip-checkpoint"
# A Plus projection (seed 40) with the regular adapter's to_k_ip/to_v_ip and image encoder: runs on the folder above.
tool ip-adapter-image --arch micro-sd-turbo --ip-adapter-random plus --ip-adapter-seed 40 \
  --ip-adapter-attention-from "$work/micro-regular-ip-adapter" --image-encoder "$work/micro-regular-ip-adapter/image_encoder" \
  --device "$FIXTURE_DEVICE" --compact-graph --out fixtures/ip-adapters/micro-plus --save-ip-adapter "$work/micro-plus-ip-adapter"
# The same UNet and adapter with ControlNet inputs (only its unet/ files are kept).
tool convert "$work/micro-sd-turbo-ip-checkpoint" "$work/micro-sd-turbo-ip-controlnet" --arch micro-sd-turbo \
  --device "$FIXTURE_DEVICE" --attention fused --compact-graph --controlnet-inputs --ip-adapter "$work/micro-regular-ip-adapter"
mkdir -p fixtures/ip-adapters/micro-regular-controlnet-unet
cp "$work/micro-sd-turbo-ip-controlnet/unet/"{model.onnx,ip_adapter.json,config.json} fixtures/ip-adapters/micro-regular-controlnet-unet/
tool ip-adapter-goldens "$work/micro-sd-turbo-ip-checkpoint" fixtures/models/micro-sd-turbo-ipadapter \
  --ip-adapter "$work/micro-regular-ip-adapter" --plus "$work/micro-plus-ip-adapter" fixtures/ip-adapters/micro-plus \
  --controlnet-unet fixtures/ip-adapters/micro-regular-controlnet-unet \
  --controlnet "$work/micro-canny-checkpoint" fixtures/controlnets/micro-canny \
  --plain-model fixtures/models/micro-sd-turbo-controlnet \
  --image fixtures/images/style.png --image fixtures/images/example.png --out fixtures/goldens/ip-adapter.json.gz

section "tokenizer ids"
tool tokenizer-ids tiny-sd-turbo=fixtures/models/tiny-sd-turbo/tokenizer \
  tiny-sd15=fixtures/models/tiny-sd15-fp16/tokenizer fixtures/tokenizer/prompts.json \
  --out fixtures/goldens/tokenizer-ids.json.gz

section "LoRAs: two random LoRAs (kohya and PEFT names, seed 50) for tiny-sd-turbo, and diffusers' outputs with them fused"
rm -rf fixtures/loras
# Checks first that the checkpoint reproduces goldens/tiny-sd-turbo.json.gz.
tool lora-goldens "$work/tiny-sd-turbo-checkpoint" --fixture-goldens fixtures/goldens/tiny-sd-turbo.json.gz \
  --out-dir fixtures/loras --out fixtures/goldens/lora.json.gz

section "LCM scheduler goldens (diffusers' LCMScheduler)"
tool scheduler-goldens --out fixtures/goldens/lcm-scheduler.json.gz

section "torch.randn goldens (bit patterns; torch's CPU kernel depends on the machine: make them on x86-64 Linux)"
tool randn-goldens --out fixtures/goldens/torch-randn.json.gz

section "the Python original's stream goldens (cumulo-autumn/StreamDiffusion on tiny-sd-turbo)"
if [[ -f "$STREAMDIFFUSION_SRC/streamdiffusion/pipeline.py" ]]; then
  tool stream-goldens "$work/tiny-sd-turbo-checkpoint" --streamdiffusion-src "$STREAMDIFFUSION_SRC" \
    --fixture-goldens fixtures/goldens/tiny-sd-turbo.json.gz ${STREAMDIFFUSION_COMMIT:+--streamdiffusion-commit "$STREAMDIFFUSION_COMMIT"} \
    --out fixtures/goldens/stream-diffusion.json.gz
else
  echo "skipped: no StreamDiffusion source at $STREAMDIFFUSION_SRC/streamdiffusion (set STREAMDIFFUSION_SRC);" \
    "fixtures/goldens/stream-diffusion.json.gz is left as committed, recorded on the committed tiny-sd-turbo weights" >&2
fi

section "fixture sizes"
find fixtures -type f | LC_ALL=C sort | while read -r file; do
  printf '%10d  %s\n' "$(stat -c %s "$file")" "$file"
done
# The budget (10 MB decimal, every file under the three fixture folders): the same check as CI's.
node scripts/fixtures-size.mjs

if [[ -n "${OUT:-}" ]]; then
  section "packing fixtures into $OUT/fixtures.tar.xz"
  mkdir -p "$OUT"
  if ! tar -cJf "$OUT/fixtures.tar.xz" fixtures 2>/dev/null; then
    # No xz binary: Python's lzma writes the same format.
    "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "w:xz").add("fixtures")' "$OUT/fixtures.tar.xz"
  fi
  ls -l "$OUT/fixtures.tar.xz"
fi

full_size_check() {
  local out=${FULL_SIZE_DIR:-/tmp/sdx-full-sd-turbo} started elapsed
  rm -rf "$out"
  started=$(date +%s)
  tool random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 --out "$out" || return 1
  elapsed=$(($(date +%s) - started))
  echo "full-size export took ${elapsed} s"
  find "$out" -type f -printf '%12s  %p\n' | LC_ALL=C sort -k2
  du -sh "$out"
  # Load every model in onnxruntime (CPU) and run it once on small inputs.
  "$PYTHON" - "$out" <<'PY' || return 1
import sys, time
import numpy as np
import onnxruntime as ort

folder = sys.argv[1]
feeds = {
    "text_encoder": {"input_ids": np.zeros((1, 77), dtype=np.int32)},
    "unet": {
        "sample": np.zeros((1, 4, 16, 16), dtype=np.float16),
        "timestep": np.array([999], dtype=np.float16),
        "encoder_hidden_states": np.zeros((1, 77, 1024), dtype=np.float16),
    },
    "vae_encoder": {"sample": np.zeros((1, 3, 128, 128), dtype=np.float16)},
    "vae_decoder": {"latent_sample": np.zeros((1, 4, 16, 16), dtype=np.float16)},
}
for name, inputs in feeds.items():
    started = time.perf_counter()
    session = ort.InferenceSession(f"{folder}/{name}/model.onnx", providers=["CPUExecutionProvider"])
    loaded = time.perf_counter()
    outputs = session.run(None, inputs)
    shapes = [tuple(output.shape) for output in outputs]
    finite = all(bool(np.isfinite(output.astype(np.float32)).all()) for output in outputs)
    print(f"  {name}: load {loaded - started:.1f} s, run {time.perf_counter() - loaded:.1f} s, outputs {shapes}, finite {finite}")
PY
}

if [[ "${SKIP_FULL_SIZE:-0}" != 1 ]]; then
  section "full-size check: random-init --arch sd-turbo --vae taesd --dtype fp16 (not copied back)"
  if full_size_check; then
    echo "full-size check: OK"
  else
    echo "full-size check: FAILED (the fixtures above are complete and unaffected)" >&2
  fi
fi

section "done"
