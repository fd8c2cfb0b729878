#!/usr/bin/env bash
# Installs the peers `nativeengine bench` measures beside itself, from Debian: PyTorch (the paper notebook's
# training loop) and OpenBLAS. Python peers run under /usr/bin/python3 (or $NE_PYTHON).
set -euo pipefail
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_if_needed apt-get update -q
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-pthread
/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)'
