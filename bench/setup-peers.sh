#!/usr/bin/env bash
# Installs the peers `nativeengine bench` measures beside itself, from Debian: PyTorch (the paper notebook's toy
# loop, the MoE toy loop, the TopK SAE), scikit-learn (MiniBatchDictionaryLearning), NumPy, threadpoolctl (which
# BLAS numpy and scikit-learn use), SciPy (the Hungarian matching of SynthSAEBench's MCC in synthsaebench_peer.py) and OpenBLAS (the reference GEMM of the machine's peak, which bench calls
# directly, and the BLAS numpy uses once installed). Python peers run under /usr/bin/python3 (or $NE_PYTHON).
# Then builds bench/TorchSharpPeer, libtorch 2.10 through TorchSharp (NuGet: TorchSharp and libtorch-cpu-linux-x64,
# about 600 MB), which bench runs as a peer process, and checks that it loads and computes the sparse SAE's gradients
# as the dense one does.
set -euo pipefail
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_if_needed apt-get update -q
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  python3-torch python3-sklearn python3-numpy python3-scipy python3-threadpoolctl libopenblas0-pthread
/usr/bin/python3 - <<'PY'
import numpy, scipy, sklearn, torch
from threadpoolctl import threadpool_info
print("torch", torch.__version__, "| scikit-learn", sklearn.__version__, "| numpy", numpy.__version__, "| scipy", scipy.__version__)
print("BLAS:", ", ".join(f"{p['internal_api']} {p['version']} ({p['filepath']})"
                         for p in threadpool_info() if p["user_api"] == "blas"))
PY

root=$(cd "$(dirname "$0")/.." && pwd)
dotnet build -c Release "$root/bench/TorchSharpPeer/TorchSharpPeer.csproj" -v quiet -nologo
out="$root/bench/TorchSharpPeer/bin/Release/net10.0/linux-x64"
/usr/bin/python3 "$root/bench/TorchSharpPeer/glibcxx_compat.py" "$out"
preload=""
[ -f "$out/libne_glibcxx_shim.so" ] && preload="$out/libne_glibcxx_shim.so"
LD_PRELOAD="$preload" dotnet "$out/torchsharp-peer.dll" check
