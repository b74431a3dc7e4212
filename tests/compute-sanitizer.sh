#!/usr/bin/env bash
# tests/compute-sanitizer.sh: NVIDIA compute-sanitizer (memcheck, racecheck,
# initcheck, synccheck) over every kernel kind ptxq generates, at odd shapes
# and m = 1..8, through `ptxgen run` (which checks each result against the
# CPU reference), then memcheck over the gpu test binaries. Needs a GPU and
# the CUDA toolkit's compute-sanitizer; not part of CI.
#
#   tests/compute-sanitizer.sh BUILD_DIR [LOG_DIR]
#
# Exit status: 0 when every run reports no error, 1 otherwise, 2 on usage.
set -uo pipefail
build=${1:?usage: tests/compute-sanitizer.sh BUILD_DIR [LOG_DIR]}
logs=${2:-$build/compute-sanitizer}
mkdir -p "$logs"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$cs" ] || { echo "compute-sanitizer not found (CUDA toolkit's bin/)"; exit 2; }
[ -x "$build/ptxgen" ] || { echo "no $build/ptxgen: build first"; exit 2; }

keys=()
for m in 1 2 3 4 5 6 7 8; do keys+=("q4k_gemv:k=4096,n=1001,m=$m" "q6k_gemv:k=2048,n=999,m=$m"); done
keys+=(q4k_gemv:k=256,n=7,m=3 q4k_gemv:k=14336,n=333,m=8 q4k_gemv:k=4096,n=1001,m=1,preload=1
       gelu:n=1001,m=3 gelu_erf:n=999,m=1 silu:n=4097,m=8 swiglu:n=14336,m=1 geglu:n=777,m=2
       rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=3
       rope:mode=normal,head_dim=64,n_dims=32,heads=5,kv_heads=1,m=1)
runs=0 failed=0
for tool in memcheck racecheck initcheck synccheck; do
  for key in "${keys[@]}"; do
    runs=$((runs + 1))
    log="$logs/$tool-$runs.log"
    timeout 300 "$cs" --tool "$tool" --error-exitcode 9 "$build/ptxgen" run "$key" >"$log" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then failed=$((failed + 1)); echo "FAIL $tool $key (exit $rc, $log)"; fi
  done
done
echo "ptxgen run under compute-sanitizer: $runs runs, $failed failed"
for t in test_gpu_ops test_gpu; do
  # test_gpu provokes one out-of-memory on purpose (ptxq_alloc's refusal):
  # memcheck reports that API error; it is listed, not counted.
  timeout 600 "$cs" --tool memcheck "$build/$t" --jobs 4 >"$logs/memcheck-$t.log" 2>&1
  echo "memcheck $t: exit $?; $(grep -c 'Invalid\|uninitialized' "$logs/memcheck-$t.log") access reports; $(grep 'ERROR SUMMARY' "$logs/memcheck-$t.log" | tail -1)"
  if grep -q 'Invalid\|uninitialized' "$logs/memcheck-$t.log"; then failed=$((failed + 1)); fi
done
[ $failed -eq 0 ]
