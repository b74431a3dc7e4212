#!/bin/sh
# run.sh: one test of the fuzz suite: replays a harness's regression and seed
# inputs, then fuzzes it for a bounded time (meson.build here runs it).
#
#   run.sh NAME HARNESS SOURCE_ROOT FIXTURES_DIR PTXGEN WORK_DIR
#
# NAME is gguf, key or cli; HARNESS the libFuzzer binary, or "" when this
# build has no clang with libFuzzer: the test then skips (77), except under
# CI, where it fails.
#
# Time: PTXQ_FUZZ_SECONDS per harness (default 30; .ci/run sets 60). For a
# long run: PTXQ_FUZZ_SECONDS=600 meson test -C build --suite fuzz
#
# Inputs: tests/fuzz/regressions/NAME/* (every input that once failed; each
# must pass), then the seeds: tests/fuzz/corpus/NAME/* plus, for gguf, the
# fixtures' .gguf files and, for key, the example keys of `ptxgen list`.
# The corpus the fuzzer grows is kept in WORK_DIR/NAME/corpus, so a second
# run goes on from the first. A finding is written to WORK_DIR/NAME/findings/
# and fails the test; keep it as a regression test by copying it into
# tests/fuzz/regressions/NAME/ under a name that says what it found.
set -u
name=$1 harness=$2 source_root=$3 fixtures=$4 ptxgen=$5 work=$6/$1
seconds=${PTXQ_FUZZ_SECONDS:-30}
here=$source_root/tests/fuzz

say() { echo "fuzz $name: $*"; }

if [ -z "$harness" ] || [ ! -x "$harness" ]; then
  case "${CI:-}" in
    ""|0|false)
      say "skipped: no clang with libFuzzer (clang -fsanitize=fuzzer) when this build was configured"
      exit 77 ;;
    *)
      say "FAIL: no clang with libFuzzer under CI (tests/run installs clang and libclang-rt-dev as root)"
      exit 1 ;;
  esac
fi
case "$seconds" in
  ''|*[!0-9]*) say "FAIL: PTXQ_FUZZ_SECONDS='$seconds' is not a whole number of seconds"; exit 1 ;;
esac

rm -rf "$work/seeds" "$work/findings"
mkdir -p "$work/seeds" "$work/corpus" "$work/findings" "$work/tmp" || exit 1
cp "$here/corpus/$name"/* "$work/seeds/" || exit 1
case "$name" in
  gguf)
    for f in "$fixtures"/*.gguf; do
      [ -r "$f" ] || { say "FAIL: no .gguf fixture in $fixtures"; exit 1; }
      cp "$f" "$work/seeds/"
    done ;;
  key)
    # One seed per kind: the example key `ptxgen list` prints.
    "$ptxgen" list >"$work/list.txt" || { say "FAIL: ptxgen list failed"; exit 1; }
    while read -r kind key rest; do
      printf '%s' "$key" >"$work/seeds/list-$kind"
    done <"$work/list.txt" ;;
  cli)
    # The files fuzz_cli's inputs name as @NAME.
    rm -rf "$work/files" && mkdir "$work/files" || exit 1
    cp "$fixtures/tiny-llama-q4km.gguf" "$work/files/fixture.gguf" ||
      { say "FAIL: no fixture in $fixtures"; exit 1; }
    cp "$here/corpus/gguf"/*.gguf "$work/files/" || exit 1
    # x for --x: 1, -0.5, 0.25, -2, ... as little-endian fp32, as many values
    # as the fixture's tensors take (k = 512 or 1536; m = 1 or 2).
    for count in 512 1024 1536; do
      i=0
      while [ $i -lt $((count / 4)) ]; do
        printf '\000\000\200\077\000\000\000\277\000\000\200\076\000\000\000\300'
        i=$((i + 1))
      done >"$work/files/x-$count.f32"
    done
    export PTXQ_FUZZ_FILES="$work/files" ;;
esac
export TMPDIR="$work/tmp"
# Leaks fail too; a sanitizer report ends the run (libFuzzer sets most of
# this itself, the options make it so when the harness runs on files).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1"

# The CLI prints; its stdout and stderr are closed so the log shows the
# fuzzer's own lines (a sanitizer report or a broken contract still shows).
quiet=""
[ "$name" = cli ] && quiet="-close_fd_mask=3"
common="-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix=$work/findings/ $quiet"

finding() {
  say "FAIL: $1"
  for f in "$work/findings"/*; do
    [ -e "$f" ] || continue
    say "finding: $f ($(wc -c <"$f") bytes)"
    say "  replay: $harness $f"
    say "  keep it: cp $f $here/regressions/$name/<what-it-found>"
  done
  exit 1
}

# 1. Replay: every regression input and every seed, once each.
set -- "$work/seeds"/*
if [ -d "$here/regressions/$name" ]; then
  for f in "$here/regressions/$name"/*; do
    [ -f "$f" ] && set -- "$@" "$f"
  done
fi
count=$#
"$harness" $common "$@" >"$work/replay.log" 2>&1 || {
  tail -n 60 "$work/replay.log"
  finding "replaying the regression and seed inputs failed (log: $work/replay.log)"
}
say "replayed $count regression and seed inputs"

# 2. Fuzz, from the kept corpus and the seeds.
dict=""
[ -r "$here/$name.dict" ] && dict="-dict=$here/$name.dict"
# Input sizes as each harness takes them. The fixture (2 MB) is cut to
# max_len when it is mutated: every structure the reader parses lies in its
# first 64 KiB.
case "$name" in
  gguf) max_len=65536 ;;
  key) max_len=1024 ;;
  *) max_len=4096 ;;
esac
say "fuzzing for ${seconds}s"
status=0
timeout $((seconds + 300)) "$harness" $common $dict -max_len=$max_len -max_total_time="$seconds" \
  -print_final_stats=1 "$work/corpus" "$work/seeds" >"$work/fuzz.log" 2>&1 || status=$?
grep -v -e '^#[0-9]*[[:space:]]*\(NEW\|REDUCE\|pulse\)' -e '^INFO: ' -e '# Uses: ' "$work/fuzz.log" | tail -n 60
[ "$status" -eq 0 ] || finding "the fuzzer stopped with status $status (log: $work/fuzz.log)"
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log")
cov=$(grep -o 'cov: [0-9]*' "$work/fuzz.log" | tail -n 1)
corpus=$(ls "$work/corpus" | wc -l)
say "ok: ${runs:-?} executions in ${seconds}s, ${cov:-cov: ?} edges, corpus of $corpus inputs"
