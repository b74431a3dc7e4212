#!/usr/bin/env bash
# tests/compute-sanitizer.sh: NVIDIA compute-sanitizer's four tools
# (memcheck, racecheck, initcheck, synccheck) over every kernel ptxq
# generates and over the gpu test suite (issue #6). Needs a GPU and the CUDA
# toolkit's compute-sanitizer; not part of CI.
#
#   tests/compute-sanitizer.sh BUILD_DIR [LOG_DIR]
#
# Under each tool, in this order:
#  (a) every key `ptxq-bench --list-keys` prints (deduplicated; stream_read
#      included), through `ptxgen run KEY --reps 0`, which checks the result
#      against the CPU reference and launches once more, with no warm-up
#      (every launch is slow under a tool: racecheck did not finish a
#      128256-row m = 8 key in 500 s with the 3 warm-ups, a timed launch and
#      the batch check). GEMV keys add --no-batch-check: its m = 1 products
#      are the m = 1 key's kernel, a key of its own here;
#  (b) odd shapes (`ptxgen run KEY --reps 0`, batch check included): plain
#      and gated GEMVs (glu=) of both weight types at odd n and m = 1..8,
#      plain ones at m = 9, 11, 13, 16 (x in tiles, Q6_K one row per warp),
#      tensor-core ones (tc=1), tuned keys, every activation and rope;
#  (c) the gpu-suite test binaries, test_gpu, test_gpu_ops, test_gpu_model,
#      tests/reliability/test_concurrency and test_faults' "faults" suite,
#      one test per process (`BINARY --filter SUITE/TEST`; test_concurrency's
#      two through test_concurrency_plain CASE, without Criterion), each
#      under TEST_LIMIT_S. concurrency_tsan is not run: it is
#      test_concurrency's source built with ThreadSanitizer, which looks at
#      host threads, not kernels, and test_concurrency itself runs here.
#
# A run passes when the program passes (exit 0, or Criterion's synthesis
# with no failure) and the tool reports nothing: memcheck, initcheck and
# synccheck print "ERROR SUMMARY: N errors", racecheck "RACECHECK SUMMARY:
# ... (E errors, W warnings)", hazards of either severity counted. CUDA API
# errors ("Program hit CUDA_ERROR_...") count too, except those a test
# provokes on purpose (expected_api below): test_gpu alloc_copy_free's one
# refused 2^60-byte ptxq_alloc, and in test_faults the exhausted device
# memory, the corrupted PTX and the hidden devices. Two test outcomes are the tool's, not ptxq's,
# and pass with a NOTE line: a test that makes no CUDA call the driver
# accepts (hidden devices: cuInit fails) leaves the tool nothing to
# instrument and no summary; and a failed assertion listed in tool_effects
# below (the open/close leak check counts the heap the tool's own in-process
# library grows; the plain gpu suite keeps that check).
#
# Slow bench keys: memcheck runs every key (up to KEY_LIMIT_MEMCHECK_S each;
# a timeout fails). Each other tool gets BENCH_BUDGET_S over the bench keys,
# smallest first, and KEY_LIMIT_S per key; a key that runs out of either is
# left to memcheck alone and listed as such (never dropped silently).
#
# Environment: TOOLS (the tools to run, default all four), PARTS (which of
# "bench odd tests faults" to run, default all; "tests" is part (c) but the
# fault tests, "faults" those alone: they exhaust device memory, so they must
# not share the GPU with another run), KEYS (an extended regular expression:
# only the bench and odd keys it matches run), TESTS (the same over the test
# runs' BINARY|SUITE/TEST), SHARD (I/N: only the keys and test runs whose
# place in their list is I modulo N, so that N runs of the script, each with
# a LOG_DIR of its own, can share a many-core host),
# BENCH_BUDGET_S (600), KEY_LIMIT_S (180), KEY_LIMIT_MEMCHECK_S (600),
# TEST_LIMIT_S (1800, per test), SEED (1), SM (target; default: the keys'
# own, sm_90).
#
# PTXQ_TESTS_UNDER_TOOL=1 is set for every run: tests that repeat work
# thousands of times run fewer repetitions (tests/under_tool.h):
# test_concurrency 3 iterations per thread of its 300 (shared_context runs
# under racecheck with CUDA_LAUNCH_BLOCKING=1: see the runs below),
# close_with_work_in_flight 64 kernels on a 2048x1024 weight instead of 3000
# on 8192x4096, the open/close cycles 50 of 1000. The code paths are the
# plain run's.
#
# Exit status: 0 when every run passes, 1 otherwise, 2 on usage.
set -uo pipefail
build=${1:?usage: tests/compute-sanitizer.sh BUILD_DIR [LOG_DIR]}
logs=${2:-$build/compute-sanitizer}
budget_s=${BENCH_BUDGET_S:-600} key_limit_s=${KEY_LIMIT_S:-180}
memcheck_limit_s=${KEY_LIMIT_MEMCHECK_S:-600} test_limit_s=${TEST_LIMIT_S:-1800}
seed=${SEED:-1}
export PTXQ_TESTS_UNDER_TOOL=1
read -ra tools <<< "${TOOLS:-memcheck racecheck initcheck synccheck}"
parts=" ${PARTS:-bench odd tests faults} "
shard=${SHARD:-0/1} shard_i=${shard%/*} shard_n=${shard#*/}
[[ $shard_i =~ ^[0-9]+$ && $shard_n =~ ^[1-9][0-9]*$ && $shard_i -lt $shard_n ]] ||
  { echo "SHARD=$shard: want I/N with 0 <= I < N"; exit 2; }

cs=$(command -v compute-sanitizer || find /usr/local/cuda*/bin -name compute-sanitizer 2>/dev/null | head -1)
[ -n "$cs" ] || { echo "compute-sanitizer not found (CUDA toolkit's bin/)"; exit 2; }
for bin in ptxgen ptxq-bench test_gpu test_gpu_ops test_gpu_model \
  tests/reliability/test_concurrency tests/reliability/test_concurrency_plain \
  tests/reliability/test_faults; do
  [ -x "$build/$bin" ] || { echo "no $build/$bin: build first (the tests need Criterion)"; exit 2; }
done
mkdir -p "$logs" || exit 2
echo "$($cs --version | tail -1); logs in $logs"

# ---- what runs ----------------------------------------------------------------

# with_sm KEY: the key for target $SM, when set (parameters may come in any order).
with_sm() { if [ -n "${SM:-}" ]; then echo "$1,sm=$SM"; else echo "$1"; fi; }

# Bench keys, cheapest first (roughly the bytes a launch touches), so that a
# tool's budget covers as many as it can.
mapfile -t bench_keys < <("$build/ptxq-bench" --list-keys ${SM:+--sm "$SM"} | sort -u | awk -F'[:,]' '
  { cost = 1
    for (i = 2; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] ~ /^(k|n|m|heads|head_dim)$/) cost *= kv[2]
      if (kv[1] == "glu") cost *= 2
    }
    if ($1 == "stream_read") cost *= 16
    printf "%.0f %s\n", cost, $0 }' | sort -n -k1,1 | cut -d' ' -f2-)
[ "${#bench_keys[@]}" -gt 0 ] || { echo "ptxq-bench --list-keys printed no key"; exit 2; }
# Keys of several weights (n2=: a layer's q, k, v, with RoPE) have no
# `ptxgen run` runner; test_gpu's gemv_multi tests launch such kernels (part
# c), so they are listed here and left to the tests.
multi_keys=() single_keys=()
for key in "${bench_keys[@]}"; do
  case $key in *,n2=*) multi_keys+=("$key") ;; *) single_keys+=("$key") ;; esac
done
bench_keys=("${single_keys[@]}")

odd_keys=()
for m in 1 2 3 4 5 6 7 8; do
  # swiglu at odd m and geglu at even m for Q4_K, the other way round for Q6_K
  glu=$([ $((m % 2)) -eq 1 ] && echo swiglu || echo geglu)
  other=$([ "$glu" = swiglu ] && echo geglu || echo swiglu)
  odd_keys+=("q4k_gemv:k=4096,n=1001,m=$m" "q6k_gemv:k=2048,n=999,m=$m"
             "q4k_gemv:k=4096,n=1001,m=$m,glu=$glu" "q6k_gemv:k=2048,n=999,m=$m,glu=$other")
done
# past m = 8 the epilogues (glu=) are refused: plain products only
for m in 9 11 13 16; do
  odd_keys+=("q4k_gemv:k=4096,n=1001,m=$m" "q6k_gemv:k=2048,n=999,m=$m")
done
# the tensor-core Q4_K GEMV (tc=1): one and two column tiles, one tile of k
# and several (k = 14336 at m = 8, 16), splits 1..8, rows past n
for m in 1 3 8 9 16; do
  odd_keys+=("q4k_gemv:k=4096,n=1001,m=$m,tc=1" "q4k_gemv:k=14336,n=333,m=$m,tc=1")
done
# shellcheck disable=SC2054 # the commas are inside keys
odd_keys+=(q4k_gemv:k=256,n=7,m=2,tc=1 q4k_gemv:k=2304,n=40001,m=5,tc=1)
# shellcheck disable=SC2054 # the commas are inside keys
odd_keys+=(q4k_gemv:k=256,n=7,m=3 q4k_gemv:k=14336,n=333,m=8 q4k_gemv:k=14336,n=333,m=16 q6k_gemv:k=256,n=3,m=16
           q4k_gemv:k=256,n=7,m=5,glu=geglu q6k_gemv:k=256,n=3,m=8,glu=swiglu
           # tuning: rows, warps, and preload 1 (no loads ahead), 2 (a chunk ahead) or 3 (a row group)
           q4k_gemv:k=4096,n=1001,m=1,preload=1 q6k_gemv:k=2048,n=999,m=1,preload=1
           q4k_gemv:k=4096,n=1001,m=4,preload=2 q6k_gemv:k=2048,n=999,m=3,preload=2
           q4k_gemv:k=4096,n=1001,m=5,preload=3 q6k_gemv:k=2048,n=999,m=8,preload=2,glu=swiglu
           q4k_gemv:k=4096,n=1001,m=3,rows=2,glu=swiglu q6k_gemv:k=2048,n=999,m=2,preload=1,glu=geglu
           q4k_gemv:k=14336,n=333,m=8,warps=4,glu=geglu q4k_gemv:k=14336,n=333,m=7,rows=4,preload=1,glu=geglu
           gelu:n=1001,m=3 gelu_erf:n=999,m=1 silu:n=4097,m=8 swiglu:n=14336,m=1 geglu:n=777,m=2
           silu:n=4097,m=16 rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=3
           rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=16
           rope:mode=normal,head_dim=64,n_dims=32,heads=5,kv_heads=1,m=1)

# this run's shard of a list (the keys here, the test runs below)
take_shard() {
  local -n list=$1
  local kept=() i
  for i in "${!list[@]}"; do [ $((i % shard_n)) -eq "$shard_i" ] && kept+=("${list[$i]}"); done
  list=("${kept[@]}")
}
if [ -n "${KEYS:-}" ]; then
  mapfile -t bench_keys < <(printf '%s\n' "${bench_keys[@]}" | grep -E -- "$KEYS")
  mapfile -t odd_keys < <(printf '%s\n' "${odd_keys[@]}" | grep -E -- "$KEYS")
fi
take_shard bench_keys
take_shard odd_keys

# Test runs, one per test, "BINARY|SUITE/TEST|I/N": the test's parameters
# I modulo N (0/1: all of them; only the tests in param_pieces are split).
# One test per process keeps a slow test from holding the others back, and
# lets SHARD spread them over several runs of the script. test_faults' fault
# tests are part "faults" (its "nodriver" suite is a unit suite: no GPU);
# the rest part "tests".
# The long parameterized tests, each split over this many processes by
# parameter (PTXQ_TEST_PARAM_SHARD, tests/gpu_common.h): every parameter
# builds its own kernels, and each build is instrumented.
declare -A param_pieces=(
  [test_gpu/gpu/gemv_matches_reference]=8
  [test_gpu/gpu/batch_rows_are_bit_identical_to_m1]=3
  [test_gpu_model/gpu/q6k_gemv_matches_reference]=3
)
test_runs=()
for bin in test_gpu test_gpu_ops test_gpu_model tests/reliability/test_concurrency \
  tests/reliability/test_faults; do
  mapfile -t names < <("$build/$bin" --list 2>/dev/null | awk '
    /^[a-z_0-9]+: [0-9]+ tests?$/ { suite = substr($1, 1, length($1) - 1); next }
    suite != "nodriver" { print suite "/" $NF }')
  [ "${#names[@]}" -gt 0 ] || { echo "$bin --list named no test"; exit 2; }
  for name in "${names[@]}"; do
    pieces=${param_pieces[$(basename "$bin")/$name]:-1}
    for ((piece = 0; piece < pieces; piece++)); do test_runs+=("$bin|$name|$piece/$pieces"); done
  done
done
if [ -n "${TESTS:-}" ]; then
  mapfile -t test_runs < <(printf '%s\n' "${test_runs[@]}" | grep -E -- "$TESTS")
fi
take_shard test_runs

# API errors provoked on purpose, by run label: "NAME:MAX" entries (MAX a
# count or "any"). The label of a test run is BINARY/SUITE/TEST.
declare -A expected_api=(
  [test_gpu/gpu/alloc_copy_free]="CUDA_ERROR_OUT_OF_MEMORY:1"
  [test_faults/faults/device_memory_exhausted]="CUDA_ERROR_OUT_OF_MEMORY:any"
  [test_faults/faults/jit_failure_is_reported_and_the_context_recovers]="CUDA_ERROR_INVALID_PTX:any"
  [test_faults/faults/driver_without_a_visible_gpu]="CUDA_ERROR_NO_DEVICE:any"
)

# Assertion messages that fail only because the tool runs inside the process,
# by run label. Any other failed assertion in the run still fails it.
declare -A tool_effects=(
  [test_faults/faults/open_close_cycles_do_not_leak]="malloc'd bytes grew by"
)

# Runs a tool cannot instrument at all, by "TOOL:label", with the reason;
# each is printed as NOT RUN and counted in the summary (never dropped
# silently). The host-memory test caps the process's address space at 1 MiB
# over its current size: initcheck's in-process library then fails its own
# allocation (std::bad_alloc, the process aborts) before ptxq's malloc does.
declare -A tool_cannot_run=(
  [initcheck:test_faults/faults/host_memory_exhausted_during_an_upload]="the tool's own allocations fail under the test's RLIMIT_AS"
)

# ---- one run ------------------------------------------------------------------

# allowed_api_count LOG ENTRIES: how many of LOG's API errors ENTRIES allow.
allowed_api_count() {
  local log=$1 entry name max n total=0
  for entry in $2; do
    name=${entry%%:*} max=${entry#*:}
    n=$(grep -c "Program hit $name " "$log")
    if [ "$max" != any ] && [ "$n" -gt "$max" ]; then n=$max; fi
    total=$((total + n))
  done
  echo "$total"
}

# criterion_passed LOG TOLERATED: whether Criterion's synthesis shows tests run
# and none failing, or failing only on assertions whose message holds TOLERATED.
criterion_passed() {
  local log=$1 tolerated=$2 asserts matched
  grep -qE 'Synthesis: Tested: [1-9][0-9]* \| Passing: [0-9]+ \| Failing: 0 \| Crashing: 0' "$log" && return 0
  [ -n "$tolerated" ] || return 1
  grep -qE 'Synthesis: Tested: [1-9][0-9]* \| Passing: [0-9]+ \| Failing: [0-9]+ \| Crashing: 0' "$log" || return 1
  asserts=$(grep -c 'Assertion Failed' "$log")
  matched=$(grep -cF -- "$tolerated" "$log")
  [ "$asserts" -gt 0 ] && [ "$asserts" -eq "$matched" ] && [ "$(grep -c '^\[FAIL\]' "$log")" -le "$asserts" ]
}

# verdict TOOL LOG RC ALLOWED CRITERION TOLERATED: prints why the run failed; nothing if it passed.
verdict() {
  local tool=$1 log=$2 rc=$3 allowed=$4 criterion=$5 tolerated=$6 reported api allowed_n findings
  if [ "$tool" = racecheck ]; then
    reported=$(awk '/RACECHECK SUMMARY:/ { n++; sub(/.*\(/, ""); split($0, p, " "); s += p[1] + p[3] }
                    END { print n ? s : "none" }' "$log")
  else
    reported=$(awk '/ERROR SUMMARY:/ { n++; sub(/.*ERROR SUMMARY: /, ""); s += $1 }
                    END { print n ? s : "none" }' "$log")
  fi
  if [ "$reported" = none ]; then
    # nothing reached the driver, so nothing was instrumented: the test's own verdict stands
    if [ "$criterion" = 1 ] && grep -q 'Target application terminated before first instrumented API call' "$log" &&
      criterion_passed "$log" ""; then
      return
    fi
    echo "no $tool summary (exit $rc)"
    return
  fi
  api=$(grep -c 'Program hit CUDA_ERROR_' "$log")
  allowed_n=$(allowed_api_count "$log" "$allowed")
  # memcheck-style summaries count the API errors among their errors; the
  # racecheck summary counts hazards alone. (If a summary ever leaves API
  # errors out, the second branch still counts every unexpected one.)
  if [ "$tool" != racecheck ] && [ "$reported" -ge "$api" ]; then
    findings=$((reported - allowed_n))
  else
    findings=$((reported + api - allowed_n))
  fi
  if [ "$findings" -gt 0 ]; then echo "$findings sanitizer report(s)"; return; fi
  if [ "$criterion" = 1 ] && ! criterion_passed "$log" "$tolerated"; then
    echo "tests failed or did not run (exit $rc)"
    return
  fi
  # a tolerated assertion leaves the program's exit 1
  if [ "$rc" -ne 0 ] && ! { [ "$rc" -eq 9 ] && [ "$allowed_n" -gt 0 ]; } &&
    ! { [ "$rc" -eq 1 ] && [ -n "$tolerated" ]; }; then
    echo "exit $rc"
  fi
}

# sanitize TOOL LABEL LIMIT_S ALLOWED CRITERION TOLERATED COMMAND...: runs
# COMMAND under TOOL and counts the run; sets why (empty: passed), timed_out
# (0/1) and log.
sanitize() {
  local tool=$1 label=$2 limit=$3 allowed=$4 criterion=$5 tolerated=$6 rc
  shift 6
  log="$logs/$tool/${label//[^A-Za-z0-9_.=-]/_}.log"
  timeout --kill-after=30 "$limit" "$cs" --tool "$tool" --error-exitcode 9 \
    --target-processes all "$@" >"$log" 2>&1
  rc=$?
  timed_out=$([ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && echo 1 || echo 0)
  why=$(verdict "$tool" "$log" "$rc" "$allowed" "$criterion" "$tolerated")
  [ "$timed_out" = 1 ] && why="timed out after $limit s"
  runs[$tool]=$((${runs[$tool]} + 1))
}

# report TOOL LABEL: prints and counts the failure of the last run, if it
# failed; notes a pass that rests on one of the tool's own outcomes.
report() {
  if [ -z "$why" ]; then
    if grep -q 'Target application terminated before first instrumented API call' "$log"; then
      echo "NOTE $1 $2: passed; no CUDA call reached the driver, nothing to instrument"
    elif grep -q 'Assertion Failed' "$log"; then
      echo "NOTE $1 $2: passed; tolerated: $(grep -F -- "${tool_effects[$2]}" "$log" | head -1 | sed 's/^\[----\] *//')"
    fi
    return
  fi
  failed[$1]=$((${failed[$1]} + 1))
  echo "FAIL $1 $2: $why ($log)"
}

# leave_to_memcheck TOOL KEY WHY
leave_to_memcheck() {
  memcheck_only[$1]=$((${memcheck_only[$1]} + 1))
  echo "MEMCHECK ONLY $1 $2: $3"
}

# bench_run_options KEY: ptxgen run's options for a bench key (part a).
bench_run_options() {
  case $1 in
    q4k_gemv:* | q6k_gemv:*) echo "--reps 0 --seed $seed --no-batch-check" ;;
    *) echo "--reps 0 --seed $seed" ;;
  esac
}

# ---- the runs -------------------------------------------------------------------

declare -A runs failed memcheck_only
not_run=0
for tool in "${tools[@]}"; do
  runs[$tool]=0 failed[$tool]=0 memcheck_only[$tool]=0
  mkdir -p "$logs/$tool"

  [[ $parts == *" bench "* ]] && echo "== $tool: ${#bench_keys[@]} bench keys;" \
    "${#multi_keys[@]} multi-weight keys left to test_gpu's gemv_multi tests: ${multi_keys[*]}"
  deadline=$((SECONDS + budget_s))
  [[ $parts == *" bench "* ]] && for key in "${bench_keys[@]}"; do
    if [ "$tool" = memcheck ]; then
      # shellcheck disable=SC2046 # the options are words
      sanitize "$tool" "$key" "$memcheck_limit_s" "" 0 "" "$build/ptxgen" run "$key" $(bench_run_options "$key")
      report "$tool" "$key"
      continue
    fi
    left=$((deadline - SECONDS))
    if [ "$left" -le 0 ]; then
      leave_to_memcheck "$tool" "$key" "the $budget_s s budget over the bench keys is spent"
      continue
    fi
    limit=$((left < key_limit_s ? left : key_limit_s))
    # shellcheck disable=SC2046 # the options are words
    sanitize "$tool" "$key" "$limit" "" 0 "" "$build/ptxgen" run "$key" $(bench_run_options "$key")
    if [ "$timed_out" = 1 ]; then
      leave_to_memcheck "$tool" "$key" "over $limit s"
    else
      report "$tool" "$key"
    fi
  done

  [[ $parts == *" odd "* ]] && echo "== $tool: ${#odd_keys[@]} odd-shape keys"
  [[ $parts == *" odd "* ]] && for key in "${odd_keys[@]}"; do
    key=$(with_sm "$key")
    sanitize "$tool" "$key" 300 "" 0 "" "$build/ptxgen" run "$key" --reps 0 --seed "$seed"
    report "$tool" "$key"
  done

  [[ $parts == *" tests "* || $parts == *" faults "* ]] && echo "== $tool: test runs (${parts# })"
  for entry in "${test_runs[@]}"; do
    IFS='|' read -r bin test piece <<< "$entry"
    label=$(basename "$bin")/$test part=tests
    [ "$(basename "$bin")" = test_faults ] && part=faults
    [[ $parts == *" $part "* ]] || continue
    if [ -n "${tool_cannot_run[$tool:$label]:-}" ]; then
      echo "NOT RUN $tool $label: ${tool_cannot_run[$tool:$label]}"
      not_run=$((not_run + 1))
      continue
    fi
    run_label=$label
    [ "$piece" = 0/1 ] || run_label="$label (parameters $piece)"
    if [ "$(basename "$bin")" = test_concurrency ]; then
      # 8 threads enqueueing on one stream while others upload and free
      # weights: under racecheck, with asynchronous launches, it stalls
      # within the first iteration (a thread uploading a weight spins on a
      # core for minutes, every other thread sleeps in a futex; traced with
      # PTXQ_TEST_TRACE=1, bench/RESULTS.md, eighth session). It passes
      # plain, under the other three tools and under TSan. Each launch
      # waiting for its kernel leaves every kernel and its shared memory
      # accesses as they were, so racecheck still sees them all.
      blocking=0
      if [ "$tool" = racecheck ] && [ "${test#*/}" = shared_context ]; then
        echo "NOTE $tool $run_label: run with CUDA_LAUNCH_BLOCKING=1 (asynchronous, it stalls under racecheck)"
        blocking=1
      fi
      # its plain main(), no Criterion runner (tests/reliability/meson.build says why)
      CUDA_LAUNCH_BLOCKING=$blocking sanitize "$tool" "$run_label" "$test_limit_s" "" 0 "" "$build/${bin}_plain" "${test#*/}"
    else
      PTXQ_TEST_PARAM_SHARD=$piece sanitize "$tool" "$run_label" "$test_limit_s" "${expected_api[$label]:-}" 1 \
        "${tool_effects[$label]:-}" "$build/$bin" --jobs 1 --verbose --filter "$test"
    fi
    report "$tool" "$run_label"
  done
done

# ---- summary --------------------------------------------------------------------

total_runs=0 total_failed=0 total_memcheck_only=0 not_run=${not_run:-0}
for tool in "${tools[@]}"; do
  echo "$tool: ${runs[$tool]} runs, ${failed[$tool]} failed, ${memcheck_only[$tool]} bench keys left to memcheck alone"
  total_runs=$((total_runs + ${runs[$tool]}))
  total_failed=$((total_failed + ${failed[$tool]}))
  total_memcheck_only=$((total_memcheck_only + ${memcheck_only[$tool]}))
done
echo "total: $total_runs runs, $total_failed failed, $total_memcheck_only (tool, bench key) pairs left to" \
  "memcheck alone (MEMCHECK ONLY lines above); not run: concurrency_tsan (ThreadSanitizer build of" \
  "test_concurrency, which runs), and $not_run (tool, test) pair(s) the tool cannot run (NOT RUN lines above)"
[ "$total_failed" -eq 0 ]
