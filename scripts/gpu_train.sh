#!/usr/bin/env bash
# Train the SHB teacher, then the SKT SHB student from it, on a lent GPU (the device tool's
# H200; Python 3.12, torch CUDA, no pydantic, no network, at most 64 MiB carried per call).
#
# The training data (SHB train_data, 58 MB) and the init (csrnet_sha as fp16, 31 MiB) do not fit
# one call beside the tree, so they travel in parts, each call copying its part to $DATA:
#   HERE:      bash scripts/gpu_train.sh prepare      -> build/gpu-train-{1,2,3} (git-ignored)
#   DEVICE:    bash scripts/gpu_train.sh stage         (one call per part, carry=[build/gpu-train-N])
#              bash scripts/gpu_train.sh train         (the last part's call; writes $OUT)
# The A+B student (configs/train/gpu_skt_ab.yaml: the default + SKT, a teacher per dataset):
#   HERE:      bash scripts/gpu_train.sh prepare-ab   -> build/gpu-ab-N (both teachers, A + B train)
#   DEVICE:    GPU_TRAIN_PARTS=build PARTS_GLOB=gpu-ab-* bash scripts/gpu_train.sh stage  (each part)
#              bash scripts/gpu_train.sh train-ab      (the last part's call; writes $OUT)
# The checkout travels too and must fit beside a part: take training/checkpoints and the
# weights other than default/yolo out of the index for the calls (git rm -r --cached, listed in
# .git/info/exclude, files moved aside), and `git reset` afterwards.
# Outputs under $OUT: the teacher as fp16 safetensors in 15 MB parts (cat them), the student,
# both runs' logs and CSVs; the teacher's files reach $OUT before the student starts.
# Environment: TRAIN_OVERRIDES (key=value ... added to both runs), TEACHER_LIMIT_S and
# STUDENT_LIMIT_S (hard time limits), GPU_TRAIN_DATA (staging folder), GPU_TRAIN_RUNS (runs'
# parent folder), GPU_TRAIN_PARTS (where the gpu-train-N parts are), GPU_TRAIN_IMAGES (images
# expected). tests/training/test_gpu_train_script.py runs it on the CPU with a tiny dataset.
set -u -o pipefail
cd "$(dirname "$0")/.."
DATA="${GPU_TRAIN_DATA:-/tmp/gpu-train}"       # where the staged parts are put together
OUT="${OUT:-out/gpu_train}"
RUNS="${GPU_TRAIN_RUNS:-training/checkpoints}"  # the two runs' out_dirs go under it
WANT="${GPU_TRAIN_IMAGES:-400}"                  # SHB train_data holds 400 images
PARTS="${GPU_TRAIN_PARTS:-build}"                # the carried parts: $PARTS/gpu-train-N
PARTS_GLOB="${PARTS_GLOB:-gpu-train-*}"          # gpu-ab-* for the A+B parts
IMAGES=shanghaitech/part_B/train_data/images

case "${1:-train}" in
prepare)
  set -e
  rm -rf build/gpu-train-1 build/gpu-train-2 build/gpu-train-3
  python - <<'PY'
import glob, os, shutil
from safetensors.torch import load_file, save_file
from safetensors import safe_open
from streamcount.models.weights import resolve_model
src = str(resolve_model("csrnet_sha"))
with safe_open(src, "pt") as f:
    meta = f.metadata()
os.makedirs("build/gpu-train-2", exist_ok=True)
save_file({k: v.half() for k, v in load_file(src).items()},
          "build/gpu-train-2/csrnet_sha_fp16.safetensors", metadata=meta)
root = "../shared/data/shanghaitech/part_B/train_data"
limits, part, acc = {1: 13.5e6, 2: 24.5e6}, 1, 0.0
for p in sorted(glob.glob(root + "/images/*.jpg")):
    s = os.path.getsize(p)
    if part in limits and acc + s > limits[part]:
        part, acc = part + 1, 0.0
    d = f"build/gpu-train-{part}/shanghaitech/part_B/train_data/images"
    os.makedirs(d, exist_ok=True)
    shutil.copy(p, d)
    acc += s
shutil.copytree(root + "/ground-truth",
                "build/gpu-train-3/shanghaitech/part_B/train_data/ground-truth")
PY
  du -sm build/gpu-train-*
  exit 0;;
stage)
  mkdir -p "$DATA"
  for d in "$PARTS"/$PARTS_GLOB; do [ -d "$d" ] && cp -r "$d/." "$DATA/"; done
  echo "staged: $(find "$DATA" -name '*.jpg' 2>/dev/null | wc -l) images in $DATA"
  exit 0;;
prepare-ab)
  set -e
  rm -rf build/gpu-ab-*
  python - <<'PY'
import glob, os, shutil
from safetensors.torch import load_file, save_file
from safetensors import safe_open
from streamcount.models.weights import resolve_model
LIMIT = 55e6  # bytes per part: the checkout (about 8 MB without checkpoints) travels beside it
os.makedirs("build/gpu-ab-tmp", exist_ok=True)
src = str(resolve_model("csrnet_sha"))
with safe_open(src, "pt") as f:
    meta = f.metadata()
save_file({k: v.half() for k, v in load_file(src).items()},
          "build/gpu-ab-tmp/csrnet_sha_fp16.safetensors", metadata=meta)
files = [("build/gpu-ab-tmp/csrnet_sha_fp16.safetensors", "csrnet_sha_fp16.safetensors"),
         ("training/checkpoints/gpu_teacher_shb/teacher_fp16.safetensors",
          "gpu_teacher_shb_fp16.safetensors")]
root = "../shared/data/shanghaitech"
for part in ("part_A", "part_B"):
    for kind in ("ground-truth", "images"):
        for p in sorted(glob.glob(f"{root}/{part}/train_data/{kind}/*")):
            files.append((p, os.path.relpath(p, os.path.dirname(root))))
n, acc = 1, 0.0
for src_path, rel in files:
    s = os.path.getsize(src_path)
    if acc and acc + s > LIMIT:
        n, acc = n + 1, 0.0
    dest = f"build/gpu-ab-{n}/{rel}"
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copy(src_path, dest)
    acc += s
shutil.rmtree("build/gpu-ab-tmp")
print(f"{n} parts")
PY
  du -sm build/gpu-ab-*
  exit 0;;
train-ab)
  for d in "$PARTS"/gpu-ab-*; do [ -d "$d" ] && cp -r "$d/." "$DATA/"; done
  n=$(find "$DATA"/shanghaitech/part_A/train_data/images "$DATA"/shanghaitech/part_B/train_data/images -name '*.jpg' 2>/dev/null | wc -l)
  want="${GPU_TRAIN_IMAGES:-700}"                # SHA 300 + SHB 400 train images
  [ "$n" -eq "$want" ] || { echo "error: $DATA holds $n of the $want A+B train images (stage every part first)"; exit 2; }
  for f in csrnet_sha_fp16 gpu_teacher_shb_fp16; do
    [ -f "$DATA/$f.safetensors" ] || { echo "error: $DATA/$f.safetensors missing (stage every part first)"; exit 2; }
  done;;
train) ;;
*) echo "usage: $0 prepare|stage|train|prepare-ab|train-ab" >&2; exit 2;;
esac

if [ "${1:-train}" = train ]; then
  for d in "$PARTS"/gpu-train-*; do [ -d "$d" ] && cp -r "$d/." "$DATA/"; done
  n=$(ls "$DATA/$IMAGES" 2>/dev/null | wc -l)
  [ "$n" -eq "$WANT" ] || { echo "error: $DATA/$IMAGES holds $n of the $WANT train images (stage every part first)"; exit 2; }
fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 STREAMCOUNT_DENSITY_CACHE="${STREAMCOUNT_DENSITY_CACHE:-/tmp/density}"
PY=python3
if $PY -c "import pydantic" 2>/dev/null; then
  export PYTHONPATH="$PWD"
elif [ -d /tmp/site ]; then
  export PYTHONPATH="/tmp/site:$PWD"      # pydantic from gpu_check.sh's install
else
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site build/gpu-wheels/*.whl || exit 3
  export PYTHONPATH="/tmp/site:$PWD"
fi
if [ "${1:-train}" = train-ab ]; then
  A="$RUNS/gpu_skt_ab"
  echo "=== A+B student $(date +%T)"
  timeout "${AB_LIMIT_S:-400}" $PY -m training.train --config configs/train/gpu_skt_ab.yaml \
    data.root="$DATA/shanghaitech" run.out_dir="$A" \
    "task.teachers={shanghaitech/part_A: $DATA/csrnet_sha_fp16.safetensors, shanghaitech/part_B: $DATA/gpu_teacher_shb_fp16.safetensors}" \
    ${TRAIN_OVERRIDES:-} > "$OUT/ab.log" 2>&1
  echo "A+B student exit $?"; tail -n 8 "$OUT/ab.log"
  best=$(ls "$A"/best_*.pt 2>/dev/null | head -n 1)
  [ -n "$best" ] || { echo "error: no best checkpoint in $A"; exit 1; }
  cp "$best" "$OUT/"                                   # about 5 MB: the hold-outs are re-measured here
  $PY -m training.export "$best" --out "$OUT/gpu_skt_ab.safetensors" --name gpu_skt_ab \
    >> "$OUT/ab.log" 2>&1 || exit 1
  tar czf "$OUT/csv.tgz" "$A"/*.csv
  ls -la "$OUT"
  exit 0
fi
T="$RUNS/gpu_teacher_shb"
S="$RUNS/gpu_skt_shb"
echo "=== teacher $(date +%T)"
timeout "${TEACHER_LIMIT_S:-210}" $PY -m training.train --config configs/train/gpu_teacher_shb.yaml \
  data.root="$DATA/shanghaitech" task.init="$DATA/csrnet_sha_fp16.safetensors" run.out_dir="$T" \
  ${TRAIN_OVERRIDES:-} \
  > "$OUT/teacher.log" 2>&1
echo "teacher exit $?"; tail -n 8 "$OUT/teacher.log"
best=$(ls "$T"/best_*.pt 2>/dev/null | head -n 1)
[ -n "$best" ] || { echo "error: no best checkpoint in $T"; exit 1; }
$PY -m training.export "$best" --out "$T/teacher_fp16.safetensors" --name gpu_teacher_shb --fp16 \
  >> "$OUT/teacher.log" 2>&1 || exit 1
sha256sum "$T/teacher_fp16.safetensors" | tee -a "$OUT/teacher.log"
split -b 15M -d "$T/teacher_fp16.safetensors" "$OUT/teacher_fp16.part"
echo "=== student $(date +%T)"
$PY -m training.shrink "$T/teacher_fp16.safetensors" --images "$DATA/$IMAGES" \
  --out "$RUNS/shrink_gpu_shb.safetensors" > "$OUT/student.log" 2>&1 || exit 1
timeout "${STUDENT_LIMIT_S:-130}" $PY -m training.train --config configs/train/gpu_skt_shb.yaml \
  data.root="$DATA/shanghaitech" task.init="$RUNS/shrink_gpu_shb.safetensors" \
  task.teacher="$T/teacher_fp16.safetensors" run.out_dir="$S" ${TRAIN_OVERRIDES:-} \
  >> "$OUT/student.log" 2>&1
echo "student exit $?"; tail -n 8 "$OUT/student.log"
best=$(ls "$S"/best_*.pt 2>/dev/null | head -n 1)
[ -n "$best" ] && $PY -m training.export "$best" --out "$OUT/gpu_skt_shb.safetensors" \
  --name gpu_skt_shb >> "$OUT/student.log" 2>&1
tar czf "$OUT/csv.tgz" "$T"/*.csv "$S"/*.csv 2>/dev/null
ls -la "$OUT"
[ -f "$OUT/gpu_skt_shb.safetensors" ] || { echo "error: no student exported"; exit 1; }
