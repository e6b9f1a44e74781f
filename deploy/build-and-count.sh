#!/usr/bin/env bash
# Build the CPU image without any container registry and count vtest.avi inside it.
#
#   sudo deploy/build-and-count.sh            # NICE_LEVEL=19 by default; WORK=/tmp/x to keep files
#
# 1. a Debian base (python3, python3-venv, ca-certificates) made from Debian's packages with
#    mmdebstrap and imported with `podman import` (skipped when the image already exists);
# 2. `podman build --isolation chroot --format docker` of deploy/docker/Dockerfile.cpu on that
#    base (torch's CPU wheel from /opt/wheels when that wheelhouse exists, else its index);
# 3. `podman image mount` + `chroot` as the image's non-root user: `streamcount count` on
#    vtest.avi (../shared/data/video, or Debian opencv-doc's copy), outputs in $WORK/out.
# Running containers needs cgroups this machine may not grant; a chroot into the image's
# root file system runs exactly the image's streamcount, model and libraries.
# Not part of `make test` / CI: it needs root, the Debian mirror and PyPI, and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=${BASE_IMAGE:-localhost/debian-python:$SUITE}
IMAGE=${IMAGE:-localhost/streamcount:cpu}
NICE=(nice -n "${NICE_LEVEL:-19}")
WORK=${WORK:-$(mktemp -d /tmp/streamcount-image.XXXXXX)}
VIDEO=${VIDEO:-$(ls ../shared/data/video/vtest.avi /usr/share/doc/opencv-doc/examples/data/vtest.avi 2>/dev/null | head -n1 || true)}
COUNT_ARGS=${COUNT_ARGS:---fps 2}
UID_IN_IMAGE=10001

log() { printf '%s [%4ss] %s\n' "$(date +%T)" "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, podman image mount and chroot need it)"
[ -n "$VIDEO" ] && [ -f "$VIDEO" ] || die "vtest.avi not found: set VIDEO=... or apt-get install opencv-doc"
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v podman >/dev/null || missing+=(podman)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p "$WORK"

# 1. base image from Debian packages
if podman image exists "$BASE_IMAGE"; then
  log "base $BASE_IMAGE exists"
else
  log "mmdebstrap $SUITE -> $WORK/base.tar"
  "${NICE[@]}" mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    --aptopt='APT::Install-Recommends "false"' "$SUITE" "$WORK/base.tar" "$MIRROR"
  log "podman import -> $BASE_IMAGE"
  podman import --change 'CMD ["python3"]' "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
  rm -f "$WORK/base.tar"
fi

# 2. the CPU image; a local wheelhouse and pip indexes of this machine are passed through
build=(--isolation chroot --format docker --pull=never -f deploy/docker/Dockerfile.cpu
       --build-arg "BASE=$BASE_IMAGE" -t "$IMAGE")
if ls /opt/wheels/torch-*.whl >/dev/null 2>&1; then
  build+=(-v /opt/wheels:/opt/wheels:ro --build-arg "TORCH_PIP_ARGS=--find-links /opt/wheels")
fi
for d in /opt/pypi /opt/pypi-more; do [ -d "$d" ] && build+=(-v "$d:$d:ro"); done
PIP=${PIP:-$(command -v pip3 || echo .venv/bin/pip)}
pipcfg() { "$PIP" config get "global.$1" 2>/dev/null | tr '\n' ' ' | xargs || true; }
# a TLS-intercepting proxy's CA (pip's cert setting) is mounted for the build's pip
cert=${PIP_CERT:-$(pipcfg cert)}
if [ -n "$cert" ] && [ -f "$cert" ]; then
  build+=(-v "$cert:/etc/streamcount-build-ca.crt:ro" --build-arg PIP_CERT=/etc/streamcount-build-ca.crt)
fi
for pair in PIP_INDEX_URL:index-url PIP_EXTRA_INDEX_URL:extra-index-url PIP_FIND_LINKS:find-links; do
  var=${pair%%:*}; val=${!var:-$(pipcfg "${pair#*:}")}
  [ -n "$val" ] && build+=(--build-arg "$var=$val")
done
log "podman build ${build[*]}"
"${NICE[@]}" podman build "${build[@]}" .
log "image: $(podman image inspect --format '{{.Id}} {{.Size}} bytes' "$IMAGE")"

# 3. count vtest.avi in the image's root file system, as its non-root user
mnt=$(podman image mount "$IMAGE")
trap 'podman image unmount "$IMAGE" >/dev/null 2>&1 || true' EXIT
mkdir -p "$WORK/out" "$WORK/video" "$WORK/state"
cp "$VIDEO" "$WORK/video/vtest.avi"
chown -R "$UID_IN_IMAGE" "$WORK/out" "$WORK/state"
log "streamcount count vtest.avi in $mnt (chroot, uid $UID_IN_IMAGE)"
# a private mount namespace for this run only: /dev, /proc, /sys, the video, a writable /tmp
# and the state volume (/var/lib/streamcount: caches, spool), as a container would have
"${NICE[@]}" unshare --mount --fork sh -euc '
  mnt=$1; work=$2; shift 2
  mount --rbind /dev "$mnt/dev"; mount -t proc proc "$mnt/proc"; mount --rbind /sys "$mnt/sys"
  mount --bind "$work/out" "$mnt/tmp"; mount --bind "$work/video" "$mnt/mnt"
  mount --bind "$work/state" "$mnt/var/lib/streamcount"
  exec chroot --userspec='"$UID_IN_IMAGE:$UID_IN_IMAGE"' "$mnt" /usr/bin/env -i \
    PATH=/opt/streamcount/bin:/usr/bin:/bin HOME=/var/lib/streamcount \
    STREAMCOUNT_HOME=/var/lib/streamcount OMP_WAIT_POLICY=PASSIVE \
    streamcount count /mnt/vtest.avi --out /tmp/vtest "$@"
' sh "$mnt" "$WORK" $COUNT_ARGS
log "done: $WORK/out/vtest/summary.json"
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("frames", s["frames_processed"], "mean", s["regions"]["all"]["mean"])' "$WORK/out/vtest/summary.json"
