#!/usr/bin/env bash
# Runs on the GPU host from the repository root: exports full-size random-weight SD-Turbo models
# (fp16, TAESD; fused and plain attention), then `pnpm bench` (bundled) on WebGPU, and the Python
# original's speed on the same weights. Output lands in $OUT. Phases, so each call stays short:
#   bash scripts/gpu-host/run-bench.sh export   # the two model folders (kept in /tmp while the host stays warm)
#   bash scripts/gpu-host/run-bench.sh ours     # pnpm bench on WebGPU
#   bash scripts/gpu-host/run-bench.sh original # the Python original in PyTorch eager (CUDA)
# Carry .gpuhost (pack.sh of .gpuhost-app, .vendor/diffusers/src, .vendor/StreamDiffusion/src) and .gl.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=tools/export:.vendor/diffusers/src
source .gpuhost/enter.sh
for deb in .gl/*.deb; do [[ -e $deb ]] && dpkg -x "$deb" /; done
ldconfig 2>/dev/null || true
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
CHECKPOINT=/tmp/sdx-bench-checkpoint FUSED=/tmp/sdx-bench-fused PLAIN=/tmp/sdx-bench-plain STATIC=/tmp/sdx-bench-static
OUT=${OUT:-/tmp/sdx-bench-out}
mkdir -p "$OUT"

export_models() {
  if [[ ! -f $FUSED/unet/model.onnx ]]; then
    timeout 300 python3 -m streamdiffusion_export random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 \
      --attention fused --out "$FUSED" --save-checkpoint "$CHECKPOINT" 2>&1 | tail -8
  fi
  if [[ ! -f $PLAIN/unet/model.onnx ]]; then
    timeout 240 python3 -m streamdiffusion_export convert "$CHECKPOINT" "$PLAIN" --dtype fp16 --attention plain 2>&1 | tail -7
  fi
}

# Static shapes (every dim fixed): onnxruntime folds the shape arithmetic of dynamic exports away.
# UNet batch = t_index_list length × frame_buffer_size (cfg none); VAE batch = frame_buffer_size.
export_static() { # attention, unet batch, vae batch
  local folder=$STATIC-$1-b$2-v$3
  [[ -f $folder/unet/model.onnx ]] && return 0
  timeout 200 python3 -m streamdiffusion_export convert "$CHECKPOINT" "$folder" --dtype fp16 --attention "$1" \
    --static --batch "$2" --vae-batch "$3" --height 512 --width 512 2>&1 | tail -6
}

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

case ${1:-all} in
  export) nvidia-smi --query-gpu=name,driver_version,memory.used --format=csv,noheader; export_models ;;
  ours)
    bench fused-nhwc-1step --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --frames 100 --warmup 10
    bench plain-nhwc-1step --model "$PLAIN" --size 512 --steps 45 --cfg none --layout NHWC --frames 30 --warmup 5
    bench fused-nchw-1step --model "$FUSED" --size 512 --steps 45 --cfg none --layout NCHW --frames 30 --warmup 5
    bench fused-nhwc-2step --model "$FUSED" --size 512 --steps 32,45 --cfg none --layout NHWC --frames 50 --warmup 5
    bench fused-nhwc-4step --model "$FUSED" --size 512 --steps 0,16,32,45 --cfg none --layout NHWC --frames 50 --warmup 5
    bench fused-nhwc-1step-f2 --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --fbs 2 --frames 50 --warmup 5
    ;;
  static-export)
    export_static fused 1 1; export_static plain 1 1; export_static fused 2 1; export_static fused 4 1; export_static fused 2 2
    ;;
  static)
    bench static-fused-1step --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 100 --warmup 10
    bench static-plain-1step --model $STATIC-plain-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 30 --warmup 5
    bench static-fused-2step --model $STATIC-fused-b2-v1 --size 512 --steps 32,45 --cfg none --layout NHWC --frames 50 --warmup 5
    bench static-fused-4step --model $STATIC-fused-b4-v1 --size 512 --steps 0,16,32,45 --cfg none --layout NHWC --frames 50 --warmup 5
    bench static-fused-1step-f2 --model $STATIC-fused-b2-v2 --size 512 --steps 45 --cfg none --layout NHWC --fbs 2 --frames 50 --warmup 5
    bench dynamic-fused-1step --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --frames 30 --warmup 5
    ;;
  profile)
    mkdir -p /tmp/sdx-profile && rm -f /tmp/sdx-profile/*
    bench profile-static-fused --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 10 --warmup 3 --profile /tmp/sdx-profile/static
    bench profile-dynamic-fused --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --frames 10 --warmup 3 --profile /tmp/sdx-profile/dynamic
    for trace in /tmp/sdx-profile/*unet*.json; do node scripts/gpu-host/profile-summary.mjs "$trace" --top 30 | tee -a "$OUT/profile-summary.txt"; done
    ;;
  original)
    for steps in 45 32,45 0,16,32,45; do
      echo "::: original, t_index_list $steps"
      timeout 150 python3 -m streamdiffusion_export time-original "$CHECKPOINT" --streamdiffusion-src .vendor/StreamDiffusion/src \
        --size 512 --steps "$steps" --cfg none --frames 50 --warmup 10 --json > "$OUT/original-${steps//,/-}.json" 2> "$OUT/original-${steps//,/-}.err" \
        && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print({k: round(v["fps"], 2) for k, v in r["results"].items()}, "fps;", round(r["peak_cuda_memory_mb"]), "MB")' "$OUT/original-${steps//,/-}.json" \
        || tail -8 "$OUT/original-${steps//,/-}.err"
    done
    ;;
  session)
    # One device call (a fresh host each time): the checkpoint and a static fused model from
    # random-init, a static plain model, our bench, a profile, and the Python original.
    if [[ ! -f $STATIC-fused-b1-v1/unet/model.onnx ]]; then
      timeout 200 python3 -m streamdiffusion_export random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 \
        --attention fused --static --batch 1 --vae-batch 1 --height 512 --width 512 \
        --out "$STATIC-fused-b1-v1" --save-checkpoint "$CHECKPOINT" 2>&1 | tail -7
    fi
    bench static-fused-1step --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 100 --warmup 10
    bench static-fused-1step-novalidation --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --validation disabled --frames 50 --warmup 5
    mkdir -p /tmp/sdx-profile && rm -f /tmp/sdx-profile/*
    bench profile-static-fused --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 10 --warmup 3 --profile /tmp/sdx-profile/static
    for trace in /tmp/sdx-profile/*unet*.json; do [[ -e $trace ]] && node scripts/gpu-host/profile-summary.mjs "$trace" --top 40 | tee -a "$OUT/profile-summary.txt"; done
    bash "$0" original
    [[ -f $FUSED/unet/model.onnx ]] || timeout 150 python3 -m streamdiffusion_export convert "$CHECKPOINT" "$FUSED" --dtype fp16 --attention fused 2>&1 | tail -2
    bench dynamic-fused-2step --model "$FUSED" --size 512 --steps 32,45 --cfg none --layout NHWC --frames 30 --warmup 5
    bench dynamic-fused-4step --model "$FUSED" --size 512 --steps 0,16,32,45 --cfg none --layout NHWC --frames 30 --warmup 5
    bench dynamic-fused-1step-f2 --model "$FUSED" --size 512 --steps 45 --cfg none --layout NHWC --fbs 2 --frames 30 --warmup 5
    ;;
  profile-only)
    if [[ ! -f $STATIC-fused-b1-v1/unet/model.onnx ]]; then
      timeout 200 python3 -m streamdiffusion_export random-init --arch sd-turbo --vae taesd --dtype fp16 --seed 0 \
        --attention fused --static --batch 1 --vae-batch 1 --height 512 --width 512 \
        --out "$STATIC-fused-b1-v1" --save-checkpoint "$CHECKPOINT" 2>&1 | tail -2
    fi
    mkdir -p /tmp/sdx-profile && rm -f /tmp/sdx-profile/*
    bench profile-static-fused --model $STATIC-fused-b1-v1 --size 512 --steps 45 --cfg none --layout NHWC --frames 10 --warmup 3 --profile /tmp/sdx-profile/static
    for trace in /tmp/sdx-profile/*unet*.json; do node scripts/gpu-host/profile-summary.mjs "$trace" --top 45 > "$OUT/profile-summary.txt"; done
    rm -f "$OUT"/bench-*.err
    ;;
  *) echo "usage: run-bench.sh export|ours|static-export|static|profile|original" >&2; exit 2 ;;
esac
