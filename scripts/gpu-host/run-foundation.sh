#!/usr/bin/env bash
# Runs on the GPU host from the repository root (see scripts/gpu-host/bundle.mjs for what travels):
# regenerates the fixtures with the export tool in PyTorch, then checks our runtime against their
# goldens on the CPU and on WebGPU. Results land in $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 STREAMDIFFUSION_FIXTURES=$PWD/fixtures/
source .gpuhost/enter.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
bash tools/export/scripts/make-fixtures.sh 2>&1 | tee "$OUT/make-fixtures.log"
echo "::: goldens on cpu"
node .gpuhost-app/compare-goldens.mjs --device cpu 2>&1 | tee "$OUT/goldens-cpu.txt"
echo "::: goldens on webgpu"
node .gpuhost-app/compare-goldens.mjs --device webgpu 2>&1 | tee "$OUT/goldens-webgpu.txt"
echo "::: main job on webgpu"
node .gpuhost-app/inspect-model.mjs --device webgpu --model fixtures/models/tiny-sd-turbo 2>&1 | tee "$OUT/inspect-webgpu.txt"
