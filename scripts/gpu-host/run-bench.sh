#!/usr/bin/env bash
# Runs on the GPU host from the repository root: exports full-size random-weight SD-Turbo models
# (fp16, TAESD), runs `pnpm bench` (bundled) on WebGPU, profiles the UNet, and times the Python
# original on the same weights. Output lands in $OUT. Every device call gets a fresh host, so each
# phase exports what it needs itself:
#   bash scripts/gpu-host/run-bench.sh session       # everything below that the closing notes quote
#   bash scripts/gpu-host/run-bench.sh sd15          # the same benches on the SD1.5 architecture
#   bash scripts/gpu-host/run-bench.sh ours          # dynamic-shape fused vs plain attention, NHWC vs NCHW
#   bash scripts/gpu-host/run-bench.sh profile-only  # onnxruntime's per-kernel profile of the UNet
#   bash scripts/gpu-host/run-bench.sh original      # the Python original in PyTorch eager (CUDA)
#   bash scripts/gpu-host/run-bench.sh controlnet    # a ControlNet's cost per frame, and the preprocessing overlap
#   bash scripts/gpu-host/run-bench.sh ipadapter     # an IP-Adapter's cost per frame, and how long a style change takes
#   bash scripts/gpu-host/run-bench.sh lora          # hot LoRA: apply, rescale, remove on the full-size model (WebGPU and CPU)
# Carry .gpuhost (pack.sh of .gpuhost-app, .vendor/diffusers/src, .vendor/StreamDiffusion/src) and .gl.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=tools/export:.vendor/diffusers/src
source .gpuhost/enter.sh
for deb in .gl/*.deb; do [[ -e $deb ]] && dpkg -x "$deb" /; done
ldconfig 2>/dev/null || true
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
CHECKPOINT=/tmp/sdx-bench-checkpoint FUSED=/tmp/sdx-bench-fused PLAIN=/tmp/sdx-bench-plain STATIC=/tmp/sdx-bench-static-fused
SD15_CHECKPOINT=/tmp/sdx-bench-sd15-checkpoint SD15=/tmp/sdx-bench-sd15
OUT=${OUT:-/tmp/sdx-bench-out}
mkdir -p "$OUT"


# The checkpoint and a model folder from random-init (its first export), unless both exist.
random_init() { # out folder, then export options
  local out=$1; shift
  [[ -f $out/unet/model.onnx && -d $CHECKPOINT/unet ]] && return 0
  timeout 300 python3 -m streamdiffusion_export random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 "$@" --out "$out" --save-checkpoint "$CHECKPOINT" 2>&1 | tail -7
}

# Another export of the same checkpoint.
convert() { # out folder, then export options
  local out=$1; shift
  [[ -f $out/unet/model.onnx ]] && return 0
  timeout 240 python3 -m streamdiffusion_export convert "$CHECKPOINT" "$out" --dtype fp16 "$@" 2>&1 | tail -6
}

# Static shapes (every dim fixed at UNet batch 1, 512×512): for 1-step, frame_buffer_size 1 benches.
static_model() { random_init "$STATIC" --attention fused --static --batch 1 --vae-batch 1 --height 512 --width 512; }

bench() { # name, then bench arguments
  local name=$1; shift
  echo "::: bench $name: $*"
  timeout 150 node .gpuhost-app/bench.mjs --device webgpu --json "$@" > "$OUT/bench-$name.json" 2> "$OUT/bench-$name.err"
  local status=$?
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const s = r.stagesMs, m = Object.entries(r.models).map(([k, v]) => `${k} ${v.msPerCall.toFixed(2)}`).join(", ");
    console.log(`${r.fps.toFixed(2)} fps, p50 ${r.latencyMs.p50.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms; stages ${Object.entries(s).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ")}; worker ${m}; outside ${(r.outsideModelRunsShare * 100).toFixed(1)}%; rss ${r.peakRssMb.toFixed(0)} MB; first call ${r.firstCallMs.toFixed(0)} ms`);
  ' "$OUT/bench-$name.json" 2>/dev/null || { echo "bench $name failed (exit $status):"; tail -5 "$OUT/bench-$name.err"; }
}

# onnxruntime's profile of the static model's UNet (GPU timestamps per kernel on WebGPU), summed.
profile_unet() {
  mkdir -p /tmp/sdx-profile && rm -f /tmp/sdx-profile/*
  bench profile-static-fused --model "$STATIC" --size 512 --steps 45 --cfg none --frames 10 --warmup 3 --profile /tmp/sdx-profile/static
  for trace in /tmp/sdx-profile/*unet*.json; do [[ -e $trace ]] && node scripts/gpu-host/profile-summary.mjs "$trace" --top 45 | tee "$OUT/profile-summary.txt"; done
}

# SD1.5 (CLIP ViT-L text encoder, 768-wide cross-attention), dynamic shapes, fused attention.
sd15_model() {
  [[ -f $SD15/unet/model.onnx ]] && return 0
  timeout 300 python3 -m streamdiffusion_export random-init --arch sd15 --vae taesd --dtype fp16 --seed 0 --attention fused --out "$SD15" --save-checkpoint "$SD15_CHECKPOINT" 2>&1 | tail -4
}

original() { # checkpoint, then t_index_lists
  local checkpoint=$1; shift
  for steps in "$@"; do
    local result=$OUT/original-$(basename "$checkpoint")-${steps//,/-}
    echo "::: original $(basename "$checkpoint"), t_index_list $steps"
    timeout 150 python3 -m streamdiffusion_export time-original "$checkpoint" --streamdiffusion-src .vendor/StreamDiffusion/src \
      --size 512 --steps "$steps" --cfg none --frames 50 --warmup 10 --json > "$result.json" 2> "$result.err" \
      && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print({k: round(v["fps"], 2) for k, v in r["results"].items()}, "fps;", round(r["peak_cuda_memory_mb"]), "MB")' "$result.json" \
      || tail -8 "$result.err"
  done
}

# SD-Turbo with the 13 residual inputs, and a random SD-Turbo-architecture ControlNet (3 channels), fp16, fused attention.
CN_MODEL=/tmp/sdx-bench-cn-model CN_CHECKPOINT=/tmp/sdx-bench-cn-checkpoint CONTROLNET=/tmp/sdx-bench-controlnet
controlnet_models() {
  [[ -f $CN_MODEL/unet/model.onnx ]] || timeout 300 python3 -m streamdiffusion_export random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 \
    --attention fused --controlnet-inputs --out "$CN_MODEL" --save-checkpoint "$CN_CHECKPOINT" 2>&1 | tail -4
  [[ -f $CONTROLNET/model.onnx ]] || timeout 300 python3 -m streamdiffusion_export controlnet --random-init --arch sd-turbo --seed 1 \
    --dtype fp16 --attention fused --out "$CONTROLNET" 2>&1 | tail -4
}
bench_controlnet() { # name, then bench arguments
  local name=$1; shift
  echo "::: bench-controlnet $name: $*"
  timeout 300 node .gpuhost-app/bench-controlnet.mjs --device webgpu --model "$CN_MODEL" --controlnet "$CONTROLNET" "$@" > "$OUT/bench-controlnet-$name.txt" 2> "$OUT/bench-controlnet-$name.err"
  local status=$?
  cat "$OUT/bench-controlnet-$name.txt"; [[ $status == 0 ]] || { echo "bench-controlnet $name failed (exit $status):"; tail -5 "$OUT/bench-controlnet-$name.err"; }
}

# The SD-Turbo checkpoint exported with a random regular IP-Adapter (ViT-H-size random image encoder), fp16, fused attention.
IP_MODEL=/tmp/sdx-bench-ip-model
ip_adapter_model() {
  random_init "$FUSED" --attention fused
  [[ -f $IP_MODEL/unet/model.onnx ]] || timeout 400 python3 -m streamdiffusion_export convert "$CHECKPOINT" "$IP_MODEL" --dtype fp16 --attention fused \
    --ip-adapter-random regular --ip-adapter-seed 30 2>&1 | tail -6
}
bench_ip_adapter() { # name, then bench arguments
  local name=$1; shift
  echo "::: bench-ip-adapter $name: $*"
  timeout 300 node .gpuhost-app/bench-ip-adapter.mjs --device webgpu --model "$IP_MODEL" --plain "$FUSED" "$@" > "$OUT/bench-ip-adapter-$name.txt" 2> "$OUT/bench-ip-adapter-$name.err"
  local status=$?
  cat "$OUT/bench-ip-adapter-$name.txt"; [[ $status == 0 ]] || { echo "bench-ip-adapter $name failed (exit $status):"; tail -5 "$OUT/bench-ip-adapter-$name.err"; }
}

case ${1:-session} in
  ipadapter)
    ip_adapter_model
    bench_ip_adapter 1step --size 512 --steps 45 --frames 50 --warmup 5 --switches 5
    bench_ip_adapter 2step --size 512 --steps 32,45 --frames 30 --warmup 5 --switches 3
    ;;
  controlnet)
    controlnet_models
    bench_controlnet canny-1step --preprocessor canny --size 512 --steps 45 --frames 50 --warmup 5
    bench_controlnet canny-2step --preprocessor canny --size 512 --steps 32,45 --frames 30 --warmup 5
    ;;
  session)
    static_model
    bench static-fused-1step --model "$STATIC" --size 512 --steps 45 --cfg none --frames 100 --warmup 10
    original "$CHECKPOINT" 45 32,45 0,16,32,45
    convert "$FUSED" --attention fused
    bench dynamic-fused-2step --model "$FUSED" --size 512 --steps 32,45 --cfg none --frames 30 --warmup 5
    bench dynamic-fused-4step --model "$FUSED" --size 512 --steps 0,16,32,45 --cfg none --frames 30 --warmup 5
    bench dynamic-fused-1step-f2 --model "$FUSED" --size 512 --steps 45 --cfg none --fbs 2 --frames 30 --warmup 5
    ;;
  ours)
    random_init "$FUSED" --attention fused
    convert "$PLAIN" --attention plain
    bench fused-nhwc-1step --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --frames 100 --warmup 10
    bench plain-nhwc-1step --model "$PLAIN" --size 512 --steps 45 --cfg none --layout NHWC --frames 30 --warmup 5
    bench fused-nchw-1step --model "$FUSED" --size 512 --steps 45 --cfg none --layout NCHW --frames 30 --warmup 5
    ;;
  sd15)
    sd15_model
    bench sd15-1step --model "$SD15" --size 512 --steps 45 --cfg none --frames 50 --warmup 5
    bench sd15-2step --model "$SD15" --size 512 --steps 32,45 --cfg none --frames 30 --warmup 5
    original "$SD15_CHECKPOINT" 45 32,45
    ;;
  lora)
    # Hot LoRA on WebGPU: a random rank-16 kohya LoRA on every attention projection of the full-size
    # SD-Turbo (fp16, fused attention), applied, rescaled and removed while a 2-step stream runs.
    random_init "$FUSED" --attention fused
    [[ -f /tmp/sdx-bench-lora.safetensors ]] || timeout 300 python3 -m streamdiffusion_export random-lora "$CHECKPOINT" --out /tmp/sdx-bench-lora.safetensors --rank 16 2>&1 | tail -2
    ls -la "$FUSED/unet" "$FUSED/text_encoder" /tmp/sdx-bench-lora.safetensors
    for run in "webgpu 512 10 300" "cpu 128 2 200"; do
      set -- $run
      echo "::: bench-lora $1 $2×$2"
      timeout "$4" node .gpuhost-app/bench-lora.mjs --device "$1" --model "$FUSED" --lora /tmp/sdx-bench-lora.safetensors --size "$2" --frames "$3" \
        > "$OUT/bench-lora-$1.txt" 2> "$OUT/bench-lora-$1.err"; cat "$OUT/bench-lora-$1.txt"; tail -3 "$OUT/bench-lora-$1.err"
    done
    ;;
  profile-only) static_model; profile_unet ;;
  original) static_model; original "$CHECKPOINT" 45 32,45 0,16,32,45 ;;
  *) echo "usage: run-bench.sh session|sd15|ours|profile-only|original|controlnet|ipadapter|lora" >&2; exit 2 ;;
esac
