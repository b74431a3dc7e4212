#!/bin/sh
# test_run_gguf.sh: suite "unit", `ptxgen run --gguf FILE --tensor NAME` from
# the outside.
#
#   tests/test_run_gguf.sh PATH/TO/ptxgen FIXTURES_DIR
#
# With --cpu on the fixture's Q4_K, Q6_K and F32 tensors and x from the
# fixture's formula, y must match the expected JSON's y (max|y-ref| /
# max|ref| <= 1e-12); m = 2 rows come out row-major; seeded x is
# deterministic; bad x, unknown tensors, bad files and keys that do not fit
# the tensor get the right exit status and a message naming the problem; a
# GPU run without a driver fails with the runtime's message. Needs python3
# (to write x and compare y). Prints each failed expectation; exits 1 if any.

bin=${1:?usage: test_run_gguf.sh PATH/TO/ptxgen FIXTURES_DIR}
fixtures=${2:?usage: test_run_gguf.sh PATH/TO/ptxgen FIXTURES_DIR}
. "$(dirname "$0")/common.sh"
use_fixtures "$fixtures"

# expect_err PATTERN WHAT: stderr must match the grep PATTERN
expect_err() {
  grep -q -- "$1" "$tmp/err" || fail "$2: stderr does not match '$1': $(head -c 600 "$tmp/err")"
}

# python3 must be there too: fail loudly, never skip.
command -v python3 >/dev/null 2>&1 || { echo "FAIL: python3 not found (needed to write x and compare y)"; exit 1; }

# write_x FILE K [SIGN...]: one row of the fixture's x per SIGN (1 or -1),
# x[i] = ((i*37) % 101 - 50) / 32.0, as raw little-endian fp32
write_x() {
  python3 - "$@" <<'EOF' || fail "write_x $*"
import struct, sys
path, k, signs = sys.argv[1], int(sys.argv[2]), [float(s) for s in sys.argv[3:]] or [1.0]
with open(path, "wb") as f:
    for s in signs:
        f.write(struct.pack("<%df" % k, *[s * (((i * 37) % 101) - 50) / 32.0 for i in range(k)]))
EOF
}

# compare_y FILE TENSOR TOL [SIGN...]: FILE holds m = (number of SIGNs) rows
# of n values, row r being SIGN_r times the JSON's y of TENSOR, within TOL
# (max|y-ref| / max|ref| over each row)
compare_y() {
  python3 - "$expected" "$@" <<'EOF'
import json, sys
expected, path, tensor, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
signs = [float(s) for s in sys.argv[5:]] or [1.0]
ref = json.load(open(expected))["tensors"][tensor]["y"]
try:
    y = [float(line) for line in open(path)]
except ValueError as e:
    sys.exit("not one number per line: %s" % e)
if len(y) != len(signs) * len(ref):
    sys.exit("%d values, want %d (m=%d, n=%d)" % (len(y), len(signs) * len(ref), len(signs), len(ref)))
for r, s in enumerate(signs):
    row = y[r * len(ref):(r + 1) * len(ref)]
    diff = max(abs(a - s * b) for a, b in zip(row, ref))
    rel = diff / max(abs(b) for b in ref)
    if not rel <= tol:
        sys.exit("row %d: max_rel_err %.3e > %.0e" % (r, rel, tol))
EOF
}

write_x "$tmp/x512" 512
write_x "$tmp/x1536" 1536
write_x "$tmp/x512x2" 512 1 -1

# --- the reference on the fixture's tensors matches the JSON -------------------
# tensor x-file: Q4_K 512x512, Q6_K k=1536 n=512, F32 k=512 n=1
for case in blk.0.attn_q.weight:x512 blk.0.ffn_down.weight:x1536 output_norm.weight:x512 \
  blk.0.ffn_up.weight:x512 token_embd.weight:x512; do
  tensor=${case%:*} x=$tmp/${case#*:}
  if run 0 run --gguf "$gguf" --tensor "$tensor" --x "$x" --cpu; then
    why=$(compare_y "$tmp/out" "$tensor" 1e-12 2>&1) || fail "run --cpu $tensor: y against the JSON: $why"
    expect_err "^ptxgen: run: $tensor .* cpu\$" "run --cpu $tensor"
  fi
done

# --out: the same y in the file, nothing on stdout
if run 0 run --gguf "$gguf" --tensor blk.0.ffn_down.weight --x "$tmp/x1536" --cpu --out "$tmp/y"; then
  [ -s "$tmp/out" ] && fail "run --out also wrote to stdout: $(head -c 200 "$tmp/out")"
  why=$(compare_y "$tmp/y" blk.0.ffn_down.weight 1e-12 2>&1) || fail "run --out: $why"
fi
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x512" --cpu --out "$tmp/no/such/dir/y" &&
  expect_err '^ptxgen: run: --out ' "run --out into a missing folder"

# m = 2: rows x and -x give rows y and -y, row-major
if run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --m 2 --x "$tmp/x512x2" --cpu; then
  why=$(compare_y "$tmp/out" blk.0.attn_q.weight 1e-12 1 -1 2>&1) || fail "run --m 2 --cpu: $why"
fi
# a KEY that agrees with the tensor: its m is used
if run 0 run q6k_gemv:k=1536,n=512,m=1,sm=80 --gguf "$gguf" --tensor blk.0.ffn_down.weight \
  --x "$tmp/x1536" --cpu; then
  why=$(compare_y "$tmp/out" blk.0.ffn_down.weight 1e-12 2>&1) || fail "run KEY --gguf --cpu: $why"
fi
if run 0 run q4k_gemv:k=512,n=512,m=2 --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x512x2" --cpu; then
  why=$(compare_y "$tmp/out" blk.0.attn_q.weight 1e-12 1 -1 2>&1) || fail "run KEY(m=2) --gguf --cpu: $why"
fi

# seeded random x: the same per seed, another for another seed, finite
if run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --seed 7; then
  cp "$tmp/out" "$tmp/seed7"
  [ "$(wc -l <"$tmp/seed7")" -eq 512 ] || fail "run --seed 7: want 512 lines, got $(wc -l <"$tmp/seed7")"
  grep -qi 'nan\|inf' "$tmp/seed7" && fail "run --seed 7: y has NaN or inf"
  expect_err 'seed=7 cpu$' "run --seed 7"
  run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --seed=7 &&
    { cmp -s "$tmp/out" "$tmp/seed7" || fail "run --seed 7 twice: y differs"; }
  run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --seed 8 &&
    { cmp -s "$tmp/out" "$tmp/seed7" && fail "run --seed 7 and 8: the same y"; }
fi
run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --m 8 &&
  { [ "$(wc -l <"$tmp/out")" -eq 4096 ] || fail "run --m 8: want 8*512 lines, got $(wc -l <"$tmp/out")"; }
# the largest batch, PTXGEN_GEMV_MAX_M: its first 8 rows are the m = 8 rows
if cp "$tmp/out" "$tmp/m8" && run 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --m 16; then
  [ "$(wc -l <"$tmp/out")" -eq 8192 ] || fail "run --m 16: want 16*512 lines, got $(wc -l <"$tmp/out")"
  head -n 4096 "$tmp/out" | cmp -s - "$tmp/m8" || fail "run --m 16: rows 0..7 differ from --m 8's"
fi

# --- bad x: exit 1 naming the sizes ------------------------------------------
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x1536" --cpu &&
  expect_err '6144 bytes.*512 fp32 values (2048 bytes)' "x of 1536 values for k=512"
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --m 2 --x "$tmp/x512" --cpu &&
  expect_err '2048 bytes.*1024 fp32 values (4096 bytes)' "x of 1 row for m=2"
head -c 2047 "$tmp/x512" >"$tmp/x-short"
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x-short" --cpu &&
  expect_err '2047 bytes' "x one byte short"
: >"$tmp/x-empty"
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x-empty" --cpu &&
  expect_err ' 0 bytes' "empty x"
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/no-such-x" --cpu &&
  expect_err "no-such-x: cannot open" "missing x"
python3 -c "
import struct, sys
v = [0.5] * 512; v[300] = float('nan')
open(sys.argv[1], 'wb').write(struct.pack('<512f', *v))" "$tmp/x-nan"
run 1 run --gguf "$gguf" --tensor blk.0.attn_q.weight --x "$tmp/x-nan" --cpu &&
  expect_err 'value 300 is nan' "x with a NaN"
[ -s "$tmp/out" ] && fail "a refused x printed y"

# --- tensors, files and keys -------------------------------------------------
run 1 run --gguf "$gguf" --tensor blk.0.no_such.weight --cpu &&
  expect_err "no tensor named 'blk.0.no_such.weight'" "unknown tensor"
run 1 run --gguf "$gguf" --tensor output_norm.weight &&
  expect_err "tensor 'output_norm.weight' is f32.*--cpu" "f32 tensor on the GPU"
head -c 1000 "$gguf" >"$tmp/truncated.gguf"
run 1 run --gguf "$tmp/truncated.gguf" --tensor blk.0.attn_q.weight --cpu &&
  expect_err "^ptxgen: $tmp/truncated.gguf: .*past the end" "truncated file"
run 1 run --gguf "$tmp/no-such.gguf" --tensor blk.0.attn_q.weight --cpu &&
  expect_err "^ptxgen: $tmp/no-such.gguf: cannot open" "missing file"

# key_mismatch KEY TENSOR PATTERN [ARGS...]: exit 2, stderr matching PATTERN,
# with and without --cpu, nothing on stdout
key_mismatch() {
  key=$1 tensor=$2 pattern=$3
  shift 3
  for cpu in --cpu ""; do
    if run 2 run "$key" --gguf "$gguf" --tensor "$tensor" $cpu "$@"; then
      expect_err "$pattern" "run '$key' --tensor $tensor $cpu $*"
      [ -s "$tmp/out" ] && fail "run '$key' --tensor $tensor: wrote to stdout"
    fi
  done
}
key_mismatch q4k_gemv:k=1536,n=512,m=1 blk.0.ffn_down.weight "is a q4_K GEMV but tensor 'blk.0.ffn_down.weight' is q6_K"
key_mismatch q6k_gemv:k=512,n=512,m=1 blk.0.attn_q.weight "is a q6_K GEMV but tensor 'blk.0.attn_q.weight' is q4_K"
key_mismatch q4k_gemv:k=512,n=1,m=1 output_norm.weight "tensor 'output_norm.weight' is f32"
key_mismatch q4k_gemv:k=1024,n=512,m=1 blk.0.attn_q.weight "has k=1024 but tensor 'blk.0.attn_q.weight' has k=512"
key_mismatch q4k_gemv:k=512,n=1536,m=1 blk.0.attn_q.weight "has n=1536 but tensor 'blk.0.attn_q.weight' has n=512"
key_mismatch q4k_gemv:k=512,n=512,m=2 blk.0.attn_q.weight "--m 3 disagrees with m=2" --m 3
key_mismatch gelu:n=512,m=1 blk.0.attn_q.weight "not a GEMV key"
key_mismatch q4k_gemv:k=512,n=512,m=1,glu=swiglu blk.0.attn_q.weight "gated"

# --- usage -------------------------------------------------------------------
run 2 run --gguf "$gguf" --cpu && expect_err "needs --tensor" "--gguf without --tensor"
run 2 run --gguf "$gguf" --tensor && expect_err "needs a value" "--tensor without a value"
run 2 run --tensor blk.0.attn_q.weight --cpu && expect_err "--tensor is an option of --gguf" "--tensor alone"
run 2 run --gguf "$gguf" --tensor blk.0.attn_q.weight --reps 5 && expect_err "--reps" "--reps with --gguf"
run 2 run --gguf "$gguf" --tensor blk.0.attn_q.weight --m 17 --cpu && expect_err "--m '17'" "--m 17"
run 2 run --gguf "$gguf" --tensor blk.0.attn_q.weight --m 0 --cpu
run 2 run 'q4k_gemv:k=4000,n=512,m=1' --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu &&
  expect_err "^ptxgen: bad key " "bad key with --gguf"
run 0 run --help && { grep -q -- '--gguf FILE --tensor NAME' "$tmp/out" || fail "run --help does not describe --gguf"; }

# --- no driver: the GPU path fails with the runtime's message ------------------
PTXQ_LIBCUDA=/nonexistent/libcuda.so.1
export PTXQ_LIBCUDA
for tensor in blk.0.attn_q.weight blk.0.ffn_down.weight; do
  if run 1 run --gguf "$gguf" --tensor "$tensor"; then
    expect_err '^ptxgen: run: ptxq_open: .*/nonexistent' "GPU run of $tensor without a driver"
    [ -s "$tmp/out" ] && fail "GPU run without a driver wrote y: $(head -c 200 "$tmp/out")"
  fi
done
run 1 run q4k_gemv:k=512,n=512,m=1,rows=2 --gguf "$gguf" --tensor blk.0.attn_q.weight &&
  expect_err '^ptxgen: run: ptxq_open: ' "GPU run of a tuned key without a driver"
unset PTXQ_LIBCUDA

finish
