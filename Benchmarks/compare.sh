#!/usr/bin/env bash
# `make bench`: ocdedit and diffusers/PyTorch on the same shapes, back to back, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv-bench/bin/python}
run() { local out; out=$("$@"); printf '%s\n' "$out" >&2; printf '%s\n' "$out" | tail -n 1; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
run .build/release/ocdedit bench gemm >/dev/null
for size in ${BENCH_SIZES:-256 512}; do
  ours=$(run .build/release/ocdedit bench unet --size "$size" --repeats 2)
  ref=$(run "$PY" Benchmarks/reference_bench.py unet --size "$size" --repeats 2)
  o=$(field "$ours" seconds_per_forward); r=$(field "$ref" seconds_per_forward)
  python3 -c "import sys; o, r = float(sys.argv[1]), float(sys.argv[2]); print(
    f'UNet {sys.argv[3]} px: ocdedit {o:.2f} s, PyTorch {r:.2f} s per forward: ocdedit is {r/o:.2f}x PyTorch')" \
    "$o" "$r" "$size"
done
