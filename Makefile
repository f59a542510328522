# pianoset: every target installs what it needs first (Debian packages, a
# .venv with the pinned set in requirements/lock.txt, the project itself).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pianoset-installed
DEBS := portaudio19-dev libfluidsynth3 libosmesa6 ffmpeg
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PREFECT_HOME ?= $(CURDIR)/.cache/prefect

.PHONY: setup debs demo test test-slow bench lerobot-check clean

setup: debs $(STAMP)
	@mkdir -p "$(PREFECT_HOME)"  # Prefect creates only the last level of its home

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): requirements/lock.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"pianoset needs Python 3.11, found {sys.version}"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: setup
	$(BIN)/pianoset demo

test: setup
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

bench: setup
	$(BIN)/python benchmarks/env_speed.py

# The LeRobot export loaded by the real `lerobot` (LeRobotDataset), in its own virtualenv: its pins
# (torch, datasets, numpy 2, pyarrow) differ from ours. SHARDS: the song folders to export
# (default datasets/shards; a small synthetic collection when it has none).
LEROBOT_VENV := .cache/lerobot-venv
SHARDS ?= datasets/shards
lerobot-check: setup
	test -x $(LEROBOT_VENV)/bin/python || $(PYTHON) -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/pip install -q -r requirements/lerobot.txt
	rm -rf .cache/lerobot-export
	$(BIN)/python -m tests.lerobot.make_export .cache/lerobot-export --shards $(SHARDS)
	$(LEROBOT_VENV)/bin/python tests/lerobot/load_export.py .cache/lerobot-export

clean:
	rm -rf $(VENV) .cache work
