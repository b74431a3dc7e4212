# common.sh: the prologue of the shell tests (test_cli.sh, test_gguf_cli.sh,
# test_run_gguf.sh), sourced by them, never run on its own.
#
# The sourcing script sets bin (the ptxgen binary) and then has: $tmp, a
# scratch folder removed on exit; fail MESSAGE, which prints and counts a
# failed expectation; run EXPECTED_STATUS ARGS..., which runs ptxgen; and
# finish, which reports and exits 1 if anything failed. use_fixtures DIR
# sets $gguf and $expected to the shared fixture and stops loudly (never
# skips) when either is missing.

test_name=$(basename "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/${test_name%.sh}.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# run EXPECTED_STATUS ARGS...: runs ptxgen, output in $tmp/out and $tmp/err
run() {
  want=$1
  shift
  "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" -ne "$want" ]; then
    fail "ptxgen $* exited $got, want $want; stderr: $(head -c 600 "$tmp/err")"
    return 1
  fi
  return 0
}

# use_fixtures DIR: the shared fixture must be there: fail loudly, never skip.
use_fixtures() {
  gguf=$1/tiny-llama-q4km.gguf
  expected=$1/tiny-llama-q4km.expected.json
  [ -r "$gguf" ] || { echo "FAIL: fixture $gguf missing"; exit 1; }
  [ -r "$expected" ] || { echo "FAIL: fixture $expected missing"; exit 1; }
}

# finish: the last line of every shell test.
finish() {
  if [ "$failures" -ne 0 ]; then
    echo "$test_name: $failures failed"
    exit 1
  fi
  echo "$test_name: all passed"
}
