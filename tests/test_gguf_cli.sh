#!/bin/sh
# test_gguf_cli.sh: suite "unit", `ptxgen gguf` from the outside.
#
#   tests/test_gguf_cli.sh PATH/TO/ptxgen FIXTURES_DIR
#
# The shared fixture lists every tensor of the expected JSON with its type
# and byte size (n * row_bytes) and its metadata; a truncated copy fails with
# exit 1 and the reader's detail; usage errors exit 2. Prints each failed
# expectation; exits 1 if any.

bin=${1:?usage: test_gguf_cli.sh PATH/TO/ptxgen FIXTURES_DIR}
fixtures=${2:?usage: test_gguf_cli.sh PATH/TO/ptxgen FIXTURES_DIR}
. "$(dirname "$0")/common.sh"
use_fixtures "$fixtures"

# --- usage ------------------------------------------------------------------------
run 2 gguf && { grep -q 'missing FILE' "$tmp/err" || fail "gguf without FILE: no message"; }
for help in --help -h; do
  run 0 gguf $help && { grep -q 'usage: ptxgen gguf' "$tmp/out" || fail "gguf $help: no usage on stdout"; }
done
run 2 gguf --bogus "$gguf"
run 2 gguf "$gguf" "$gguf"
run 0 --help && { grep -q '  gguf FILE' "$tmp/out" || fail "ptxgen --help does not list gguf"; }

# --- the fixture ------------------------------------------------------------------
if run 0 gguf "$gguf"; then
  cp "$tmp/out" "$tmp/listing"
  [ -s "$tmp/err" ] && fail "gguf on the fixture wrote to stderr: $(head -c 300 "$tmp/err")"
  grep -q '^version 3, alignment 32, 6 metadata keys, 6 tensors$' "$tmp/listing" ||
    fail "summary line: $(head -n 1 "$tmp/listing")"
  grep -q '^  general.architecture  *string  *"llama"$' "$tmp/listing" || fail "general.architecture line"
  grep -q '^  llama.embedding_length  *u32  *512$' "$tmp/listing" || fail "llama.embedding_length line"
  grep -q '^  llama.rope.freq_base  *f32  *500000$' "$tmp/listing" || fail "llama.rope.freq_base line"

  # One line per tensor of the JSON: "name": {"type": "q4_K", "k": 512, "n": 512, "row_bytes": 288, ...
  sed -n 's/^ *"\([^"]*\)": {"type": "\([^"]*\)", "k": \([0-9]*\), "n": \([0-9]*\), "row_bytes": \([0-9]*\),.*/\1 \2 \3 \4 \5/p' \
    "$expected" >"$tmp/tensors"
  [ "$(wc -l <"$tmp/tensors")" -eq 6 ] || fail "expected JSON: want 6 tensors, parsed $(wc -l <"$tmp/tensors")"
  while read -r name type k n row_bytes; do
    bytes=$((n * row_bytes))
    if [ "$n" -eq 1 ]; then dims=$k; else dims=${k}x$n; fi
    awk -v name="$name" -v type="$type" -v dims="$dims" -v bytes="$bytes" '
      $1 == name && $2 == type && $3 == dims && $4 == bytes { found = 1 }
      END { exit !found }' "$tmp/listing" ||
      fail "no line '$name $type $dims $bytes ...' in: $(grep -F "$name" "$tmp/listing")"
  done <"$tmp/tensors"
  [ "$(sed -n '/^tensors:$/,$p' "$tmp/listing" | grep -c '^  ')" -eq 6 ] || fail "want 6 tensor lines"
fi

# --- bad files: exit 1, "ptxgen: FILE: <detail>" ---------------------------------
head -c 1000 "$gguf" >"$tmp/truncated.gguf"
run 1 gguf "$tmp/truncated.gguf" &&
  { grep -q "^ptxgen: $tmp/truncated.gguf: .*past the end" "$tmp/err" ||
    fail "truncated fixture: message: $(cat "$tmp/err")"; }
[ -s "$tmp/out" ] && fail "a refused file printed a listing"
head -c 100 "$gguf" >"$tmp/header-only.gguf"
run 1 gguf "$tmp/header-only.gguf" &&
  { grep -q "^ptxgen: $tmp/header-only.gguf: .*byte [0-9]" "$tmp/err" ||
    fail "cut header: message: $(cat "$tmp/err")"; }
printf 'GGML\003\000\000\000' >"$tmp/bad-magic.gguf"
run 1 gguf "$tmp/bad-magic.gguf" &&
  { grep -q "magic" "$tmp/err" || fail "bad magic: message: $(cat "$tmp/err")"; }
run 1 gguf "$tmp/no-such-file.gguf" &&
  { grep -q "^ptxgen: $tmp/no-such-file.gguf: cannot open" "$tmp/err" || fail "missing file: message: $(cat "$tmp/err")"; }

finish
