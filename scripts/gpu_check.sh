#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a machine with a GPU and torch (CUDA build) installed:
# builds the extension in place, runs the CUDA tests and the GPU benchmarks, and writes
# everything (logs, JSON, a markdown table) to $OUT (default ./gpu-check-out).
#
#   OUT=/some/dir bash scripts/gpu_check.sh
#
# Works offline: it installs nothing but this package (--no-deps). Without pytest-benchmark the
# benchmarks fall back to a small CUDA-event timer. Exit status: non-zero when the build or the
# CUDA tests fail.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-check-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python}"
status=0

"$PY" - > "$OUT/device.txt" 2>&1 <<'PYEOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, p.name, f"sm_{p.major}{p.minor}", f"{p.total_memory / 2**30:.0f} GiB")
PYEOF
cat "$OUT/device.txt"
ARCH="$("$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.major}.{p.minor}")' 2>/dev/null || echo 9.0)"

echo "== build (TORCH_CUDA_ARCH_LIST=$ARCH)"
start=$(date +%s)
if ! FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$PY" -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  echo "build failed, see $OUT/build.log"; tail -n 40 "$OUT/build.log"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"
"$PY" -c "import aigc_engine.ops as o; print(o.backend_info())" | tee "$OUT/backend_info.txt"

echo "== CUDA tests"
if "$PY" -c "import pytest" 2>/dev/null; then
  "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_ops_gaussian.py tests/test_ops_gan.py \
      tests/test_ops_em_stats.py tests/test_gmm_engine.py --junitxml "$OUT/cuda_tests.xml" 2>&1 | tee "$OUT/cuda_tests.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  # the CPU tests too, quickly: the same build must still pass them
  "$PY" -m pytest -q -p no:cacheprovider -m "not cuda" tests/test_ops_gaussian.py tests/test_ops_gan.py \
      tests/test_ops_em_stats.py 2>&1 | tail -n 5 | tee "$OUT/cpu_tests.txt"
else
  echo "pytest not installed: skipping the tests" | tee "$OUT/cuda_tests.txt"; status=1
fi

echo "== GPU benchmarks"
if "$PY" -c "import pytest_benchmark" 2>/dev/null; then
  AIGC_BENCH_ROUNDS=5 "$PY" -m pytest -q -p no:cacheprovider bench/bench_kernels.py -k cuda \
      --benchmark-only --benchmark-json "$OUT/bench_cuda.json" > "$OUT/bench_cuda.log" 2>&1
  "$PY" bench/report.py "$OUT/bench_cuda.json" -o "$OUT/bench_cuda.md"
else
  "$PY" - > "$OUT/bench_cuda.md" 2>&1 <<'PYEOF'
import math, torch
from aigc_engine import ops
from aigc_engine.ops import reference
def t(fn, reps=20):
    fn(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(reps):
        s.record(); fn(); e.record(); torch.cuda.synchronize(); best = min(best, s.elapsed_time(e))
    return best
print("| case | implementation | ms (min) | ext speed-up |\n|---|---|---:|---:|")
N, D, K = 1_000_000, 16, 32
x = torch.randn(N, D, device="cuda"); mu = torch.randn(K, D, device="cuda")
A = torch.randn(K, D, D, device="cuda"); cov = A @ A.mT / D + torch.eye(D, device="cuda")
P = torch.linalg.solve_triangular(torch.linalg.cholesky(cov), torch.eye(D, device="cuda").expand(K, D, D), upper=False).mT.contiguous()
lw = torch.full((K,), -math.log(K), device="cuda")
rows = {"ext": t(lambda: ops.gaussian_log_prob(x, mu, P, "full")),
        "ext_estep": t(lambda: ops.gaussian_estep(x, mu, P, "full", lw)),
        "reference": t(lambda: reference.gaussian_log_prob(x, mu, P, "full"))}
for k, v in rows.items():
    print(f"| full N={N} D={D} K={K} | {k} | {v:.3f} | {v / rows['ext']:.2f}x |")
for dtype in (torch.float32, torch.bfloat16):
    r = torch.randn(16_000_000, device="cuda", dtype=dtype, requires_grad=True)
    f = torch.randn(16_000_000, device="cuda", dtype=dtype, requires_grad=True)
    rows = {"ext": t(lambda: torch.autograd.grad(ops.gan_d_loss(r, f), (r, f))),
            "reference_eager": t(lambda: torch.autograd.grad(reference.gan_d_loss(r, f), (r, f)))}
    for k, v in rows.items():
        print(f"| gan_d_loss ns N=16M {dtype} | {k} | {v:.3f} | {v / rows['ext']:.2f}x |")
PYEOF
fi
cat "$OUT/bench_cuda.md"
exit $status
