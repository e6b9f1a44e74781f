# The README's two commands:  `make run`  (install + count a real clip)  and  `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel of torch first, so no multi-GB CUDA build is pulled on CPU machines. Outside this
# workplace set e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# the sample clip: ../shared if present, else Debian's opencv-doc package (same vtest.avi)
VIDEO ?= $(firstword $(wildcard ../shared/data/video/vtest.avi) /usr/share/doc/opencv-doc/examples/data/vtest.avi)
OUT ?= streamcount-out
COUNT_ARGS ?= --annotate --plot
APT_RUN := ffmpeg opencv-doc
APT_TEST := ffmpeg opencv-doc mosquitto python3-gi gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav openssl docker-compose chromium

.PHONY: run test install install-dev apt-run apt-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q torch==$(TORCH_VERSION) $(TORCH_PIP_ARGS)
	$(BIN)/pip install -q -e .

install-dev: install
	$(BIN)/pip install -q -e '.[dev]'

apt-run:
	@if [ ! -e "$(VIDEO)" ] || ! command -v ffmpeg >/dev/null; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_RUN) >/dev/null; fi

apt-test:
	@missing=$$(for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

## Install and count the people in a real CCTV clip (or VIDEO=your.mp4).
run: apt-run install
	$(BIN)/streamcount count "$(VIDEO)" --out $(OUT) $(COUNT_ARGS)

## Install everything (Debian packages for the real broker, RTSP server and ffmpeg) and run all tests.
test: apt-test install-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
