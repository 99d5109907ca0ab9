#!/usr/bin/env bash
# Runs on the GPU host from the repository root (see scripts/gpu-host/bundle.mjs for what travels):
# regenerates the fixtures with the export tool in PyTorch, then checks our runtime against their
# goldens on the CPU and on WebGPU (with GPU residency), records the Python original's stream goldens
# here (when .vendor/StreamDiffusion/src travels) and compares our pipeline with them on both, and runs the main job on the tiny and the full-size SD-Turbo
# (random weights) on WebGPU. Results land in $OUT.
#   SKIP_FIXTURES=1   use the committed fixtures as they are
#   SKIP_FULL_SIZE=1  no full-size SD-Turbo export and runs
set -uo pipefail
export PYTHONUNBUFFERED=1 STREAMDIFFUSION_FIXTURES=$PWD/fixtures/ FULL_SIZE_DIR=/tmp/sdx-full-sd-turbo
source .gpuhost/enter.sh
# NVIDIA's Vulkan ICD (libGLX_nvidia) needs the GL vendor-neutral dispatch libraries; a bare host lacks them.
# Carry them as .gl/*.deb (README "GPU host runs").
for deb in .gl/*.deb; do [[ -e $deb ]] && dpkg -x "$deb" /; done
ldconfig 2>/dev/null || true
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
if [[ ${SKIP_FIXTURES:-0} == 1 && ${SKIP_FULL_SIZE:-0} == 1 ]]; then
  echo "committed fixtures as they are; no full-size model"
elif [[ ${SKIP_FIXTURES:-0} == 1 ]]; then
  # Only the full-size model for the timing below; the committed fixtures are used as they are.
  PYTHONPATH=tools/export:.vendor/diffusers/src timeout 300 python3 -m streamdiffusion_export random-init \
    --arch sd-turbo --vae taesd --dtype fp16 --seed 0 --out "$FULL_SIZE_DIR" 2>&1 | tail -8
else
  timeout 420 bash tools/export/scripts/make-fixtures.sh 2>&1 | tee "$OUT/make-fixtures.log"
fi
for device in cpu webgpu; do
  echo "::: goldens on $device"
  timeout 60 node .gpuhost-app/compare-goldens.mjs --device "$device" 2>&1 | tee "$OUT/goldens-$device.txt"
done
echo "::: main job on webgpu, tiny model"
timeout 60 node .gpuhost-app/inspect-model.mjs --device webgpu --model fixtures/models/tiny-sd-turbo 2>&1 | tee "$OUT/inspect-webgpu.txt"
if [[ ${SKIP_FULL_SIZE:-0} != 1 && -d $FULL_SIZE_DIR/unet ]]; then
  echo "::: main job on webgpu, full-size SD-Turbo (random weights, fp16), 512x512"
  timeout 180 node .gpuhost-app/inspect-model.mjs --device webgpu --model "$FULL_SIZE_DIR" --size 512 --repeat 20 2>&1 | tee -a "$OUT/inspect-webgpu.txt"
fi
stream_fixtures=$PWD/fixtures/
if [[ ${SKIP_FIXTURES:-0} != 1 ]]; then
  # make-fixtures.sh above recorded them into fixtures/ already (when the original's source travels).
  cp fixtures/goldens/stream-diffusion.json.gz "$OUT/"
elif [[ -d .vendor/StreamDiffusion/src ]]; then
  # The Python original's stream goldens recorded here (this host's torch, its CPU, float32) from the
  # fixture's weights; our pipeline is then compared with these (they land in $OUT to be committed).
  echo "::: stream goldens recorded on this host with cumulo-autumn/StreamDiffusion"
  ck=/tmp/sdx-stream-goldens
  rm -rf "$ck" && mkdir -p "$ck"
  PYTHONPATH=tools/export:.vendor/diffusers/src timeout 300 python3 -m streamdiffusion_export random-init --arch tiny-sd-turbo \
    --vae taesd --dtype fp32 --seed 0 --device cpu --attention fused --out "$ck/tiny" --save-checkpoint "$ck/checkpoint" 2>&1 | tail -2
  PYTHONPATH=tools/export:.vendor/diffusers/src timeout 300 python3 -m streamdiffusion_export stream-goldens "$ck/checkpoint" \
    --streamdiffusion-src .vendor/StreamDiffusion/src ${STREAMDIFFUSION_COMMIT:+--streamdiffusion-commit "$STREAMDIFFUSION_COMMIT"} \
    --out "$OUT/stream-diffusion.json.gz" 2>&1 | tee "$OUT/stream-goldens-record.txt"
  cp -r fixtures "$ck/fixtures" && cp "$OUT/stream-diffusion.json.gz" "$ck/fixtures/goldens/"
  stream_fixtures=$ck/fixtures/
fi
for device in cpu webgpu; do
  echo "::: our pipeline against the Python original's stream goldens ($stream_fixtures) on $device"
  STREAMDIFFUSION_FIXTURES=$stream_fixtures timeout 180 node .gpuhost-app/compare-stream-goldens.mjs --device "$device" 2>&1 | tee "$OUT/stream-goldens-$device.txt"
done
if [[ ${SKIP_FULL_SIZE:-0} != 1 && -d $FULL_SIZE_DIR/unet ]]; then
  echo "::: img2img, full-size SD-Turbo (random weights, fp16), 512x512, webgpu, 30 frames"
  timeout 180 node .gpuhost-app/img2img.mjs --device webgpu --model "$FULL_SIZE_DIR" --image fixtures/images/example.png \
    --size 512 --steps 32,45 --frames 30 --out "$OUT/img2img-512.png" 2>&1 | tee "$OUT/img2img-webgpu.txt"
  timeout 180 node .gpuhost-app/img2img.mjs --device webgpu --model "$FULL_SIZE_DIR" --image fixtures/images/example.png \
    --size 512 --steps 45 --frames 30 --out "$OUT/img2img-512-1step.png" 2>&1 | tee -a "$OUT/img2img-webgpu.txt"
fi
if [[ ${CHECK_REGENERATION:-0} == 1 && ${SKIP_FIXTURES:-0} != 1 ]]; then
  echo "CHECK_REGENERATION needs SKIP_FIXTURES=1: fixtures/ was just regenerated in place, there is nothing committed to compare with"
elif [[ ${CHECK_REGENERATION:-0} == 1 ]]; then
  # The documented regeneration command, run in a copy: does it still make what is committed?
  echo "::: make-fixtures.sh in a copy, compared with the committed fixtures"
  regen=/tmp/sdx-regen
  rm -rf "$regen" && mkdir -p "$regen"
  cp -r tools scripts fixtures "$regen/" && ln -s "$PWD/.vendor" "$regen/.vendor"
  (cd "$regen" && SKIP_FULL_SIZE=1 timeout 420 bash tools/export/scripts/make-fixtures.sh) > "$OUT/make-fixtures.log" 2>&1
  echo "make-fixtures.sh exit $?; last lines:" && tail -5 "$OUT/make-fixtures.log"
  python3 scripts/gpu-host/compare-fixture-trees.py fixtures "$regen/fixtures" 2>&1 | tee "$OUT/fixtures-regenerated.txt"
fi
