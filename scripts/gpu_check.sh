#!/usr/bin/env bash
# The prepared GPU check for a session with a lent NVIDIA machine (H100/H200 image: Python 3.12,
# torch 2.11 CUDA, no torch-tensorrt, no PyAV, no pydantic, no network).
#
# Two steps:
#   1. HERE (network to PyPI, ../shared/data present):   bash scripts/gpu_check.sh fetch
#      downloads the missing wheels into build/gpu-wheels/ and copies the few real test files
#      (MCNN part-B weights, 8 + 16 ShanghaiTech images, ~5 MB) into build/gpu-data/. Both are
#      under build/, which .gitignore ignores, so they never get committed.
#   2. On the device:  run(command="bash scripts/gpu_check.sh", carry=["build/gpu-wheels",
#      "build/gpu-data"], timeout_s=590)
#      (the checkout travels with every call and is over 64 MiB with training/checkpoints and
#      all packaged weights: take those out of the index for the call, as scripts/gpu_train.sh's
#      header says; on 4 Dec 2026 the call carried 61 MiB and took 105 s plus the machine's start)
#      runs the GPU tests (and the CPU side of the same test files, on torch 2.11), the parity
#      tests, `bench model` (torch vs cuda, fp32/fp16) and `bench capacity` (cuda), writing
#      logs and JSON under $OUT (default out/gpu_check; the JSON results as one tar,
#      results_json.tar: a run returns 8 files at most), and `bench capacity` again with
#      software decoding. Budget: at most 150+100+60+150+100 s of steps, under 10 minutes
#      (on 4 Dec 2026 the four steps then present took 105 s): timeout_s=590.
set -u -o pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "fetch" ]; then
  set -e
  w=build/gpu-wheels
  mkdir -p "$w"
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$w" \
    av==18.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5
  src=../shared/data
  d=build/gpu-data
  mkdir -p "$d/weights/mcnn" "$d/shanghaitech/part_B/test_data/images" \
           "$d/shanghaitech/part_A/test_data/images"
  cp "$src/weights/mcnn/mcnn_shtechB_110.h5" "$d/weights/mcnn/"
  for i in $(seq 1 8); do
    cp "$src/shanghaitech/part_B/test_data/images/IMG_$i.jpg" "$d/shanghaitech/part_B/test_data/images/"
  done
  for i in $(seq 1 16); do
    cp "$src/shanghaitech/part_A/test_data/images/IMG_$i.jpg" "$d/shanghaitech/part_A/test_data/images/"
  done
  du -sh "$w" "$d"
  exit 0
fi

OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export STREAMCOUNT_CACHE="${STREAMCOUNT_CACHE:-/tmp/streamcount-cache}"
PY=python3
status=0
step() {  # step NAME TIMEOUT_S CMD... : run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date +%T), limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "=== $name: exit $rc"
  [ "$rc" -eq 0 ] || status=1
}

# packages the image lacks, carried as wheels (see 'fetch')
if ls build/gpu-wheels/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site build/gpu-wheels/*.whl || exit 3
  export PYTHONPATH="/tmp/site:$PWD"
else
  echo "warning: no build/gpu-wheels (run 'bash scripts/gpu_check.sh fetch' here first)"
  export PYTHONPATH="$PWD"
fi
# real test data where tests/conftest.py looks for it (../shared/data)
if [ ! -e ../shared/data ] && [ -d build/gpu-data ]; then
  mkdir -p ../shared && ln -s "$PWD/build/gpu-data" ../shared/data
fi

nvidia-smi > "$OUT/env.txt" 2>&1
$PY - >> "$OUT/env.txt" 2>&1 <<'EOF'
import json, platform, torch
d = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
try:
    import av, av.codec.hwaccel as h
    d["av"] = av.__version__; d["hwdevices"] = list(h.hwdevices_available())
except Exception as e:
    d["av"] = f"missing: {e}"
try:
    import torch_tensorrt
    d["torch_tensorrt"] = torch_tensorrt.__version__
except Exception as e:
    d["torch_tensorrt"] = f"missing: {str(e).splitlines()[0]}"
print(json.dumps(d, indent=1))
EOF
tail -n 20 "$OUT/env.txt"

# 1. the GPU backend tests, CPU and GPU parts alike, with the parity tests on real images
step pytest 150 $PY -m pytest -p no:cacheprovider -q -rs -o addopts="" \
  tests/engine/test_cuda.py tests/engine/test_tensorrt.py tests/engine/test_selection.py \
  tests/engine/test_gpu_preprocess.py tests/engine/test_engine_cache.py tests/bench

# 2. model throughput: GPU (cuda fp32/fp16; tensorrt listed as unavailable unless
#    torch-tensorrt is there), then the CPU torch reference on the same machine (short)
step bench_model_gpu 100 $PY -m streamcount.bench model --model csrnet_1_4 \
  --backends cuda,tensorrt --precisions fp32,fp16 --batch 1,4,16 \
  --sizes 540p,720p,1080p --runs 50 --warmup 5 --max-seconds 3 --json "$OUT/bench_model_gpu.json"
step bench_model_cpu 60 $PY -m streamcount.bench model --model csrnet_1_4 \
  --backends torch --precisions fp32 --batch 1 --sizes 540p,1080p --runs 5 --warmup 1 \
  --max-seconds 3 --json "$OUT/bench_model_cpu.json"

# 3. end-to-end capacity: 1080p H.264 cameras at 5 inferences/s each, CUDA fp16
step bench_capacity 150 $PY -m streamcount.bench capacity --model csrnet_1_4 --backend cuda \
  --precision fp16 --fps 5 --size 1080p --duration 5 --warmup 2 --start 8 --max-streams 512 \
  --max-trials 8 --json "$OUT/bench_capacity_cuda.json"

# 4. the same with software decoding: on the H200 (4 Dec 2026) step 3 held one camera at 5 fps
#    with NVDEC although inference took under 1 ms a frame, while this loop holds two 1080p
#    cameras on a 2-core CPU; this run tells the NVDEC readers from the CUDA backend
step bench_capacity_sw 100 $PY -m streamcount.bench capacity --model csrnet_1_4 --backend cuda \
  --precision fp16 --fps 5 --size 1080p --duration 5 --warmup 2 --start 8 --max-streams 512 \
  --max-trials 6 --hwaccel none --json "$OUT/bench_capacity_sw.json"

# a run returns at most 8 files: the JSON results travel as one tar
(cd "$OUT" && tar cf results_json.tar ./*.json && rm -f ./*.json)
echo "gpu_check finished with status $status; files in $OUT"
exit $status
