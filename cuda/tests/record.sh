#!/usr/bin/env bash
# Rewrites test_recorded_values.inc from this source tree: builds test_recorded for each build signature (avx512
# through -march=native on a machine that has it, avx2 through -march=haswell, baseline without -march) and keeps
# what each prints. Run it only for a change that is meant to change the CPU's arithmetic, and say so in the commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out="$root/cuda/tests/test_recorded_values.inc"
tmp=$(mktemp)
echo "// {build signature, run, FNV-1a hash}: written by cuda/tests/record.sh (test_recorded --print)." > "$tmp"
for variant in native haswell baseline; do
  case $variant in
    native) flags=(-DNE_NATIVE=ON) ;;
    haswell) flags=(-DNE_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=haswell) ;;
    baseline) flags=(-DNE_NATIVE=OFF) ;;
  esac
  build="$root/build/record-$variant"
  cmake -S "$root" -B "$build" -DNE_CUDA=OFF "${flags[@]}" > /dev/null
  cmake --build "$build" -j2 --target test_recorded > /dev/null
  "$build/cuda/tests/test_recorded" --print | grep '^    {' >> "$tmp"
done
mv "$tmp" "$out"
echo "wrote $out ($(grep -c '^    {' "$out") recordings)"
