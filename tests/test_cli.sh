#!/bin/sh
# test_cli.sh: suite "unit", the `ptxgen` command-line tool from the outside.
#
#   tests/test_cli.sh PATH/TO/ptxgen
#
# Exit statuses (0 ok, 1 failure, 2 usage), where data and messages go, that
# every example key of `list` emits and (where `run` has one) runs its CPU
# reference, that emit is deterministic, that bad keys are refused with a
# message naming the problem, the CPU-only runs of q4k_gemv and q6k_gemv
# (plain and gated), the activations and rope, the usage errors of run
# --gguf, and check when a ptxas can be found. Prints each failed
# expectation; exits 1 if any.

bin=${1:?usage: test_cli.sh PATH/TO/ptxgen}
. "$(dirname "$0")/common.sh"

# --- help and usage ----------------------------------------------------------
for help in --help -h help; do
  run 0 $help && { grep -q 'usage: ptxgen' "$tmp/out" || fail "ptxgen $help: no usage on stdout"; }
done
for command in list emit check run; do
  for help in --help -h; do
    run 0 $command $help &&
      { grep -q "usage: ptxgen $command" "$tmp/out" || fail "ptxgen $command $help: no usage on stdout"; }
  done
done
run 2
run 2 frobnicate && { grep -q "unknown command 'frobnicate'" "$tmp/err" || fail "unknown command: message"; }
run 2 list --bogus
run 2 emit
run 2 emit --bogus q4k_gemv:k=256,n=1,m=1
run 2 emit q4k_gemv:k=256,n=1,m=1 q4k_gemv:k=256,n=2,m=1
run 2 emit q4k_gemv:k=256,n=1,m=1 -o
run 2 check
run 2 run
run 2 run q4k_gemv:k=256,n=1,m=1 --reps 100001 --cpu
run 2 run q4k_gemv:k=256,n=1,m=1 --reps -1 --cpu
run 2 run q4k_gemv:k=256,n=1,m=1 --seed x --cpu
run 2 run silu:n=7,m=1 --no-batch-check --cpu &&
  { grep -q -- '--no-batch-check is an option of q4k_gemv' "$tmp/err" || fail "run --no-batch-check on silu: message"; }
run 0 run q4k_gemv:k=256,n=1,m=2 --reps 0 --no-batch-check --cpu
# run --gguf (tests/test_run_gguf.sh runs it on the fixture): what needs no file
run 2 run --gguf && { grep -q -- '--gguf needs a value' "$tmp/err" || fail "run --gguf without FILE: message"; }
run 2 run --gguf "$tmp/model.gguf" --cpu && { grep -q 'needs --tensor' "$tmp/err" || fail "run --gguf without --tensor: message"; }
for option in --tensor --x --out --m; do
  run 2 run q4k_gemv:k=256,n=1,m=1 --cpu $option 1 &&
    { grep -q -- "$option is an option of --gguf" "$tmp/err" || fail "run $option without --gguf: message"; }
done
run 1 run --gguf "$tmp/no-such.gguf" --tensor w --cpu &&
  { grep -q "^ptxgen: $tmp/no-such.gguf: cannot open" "$tmp/err" || fail "run --gguf of a missing file: message"; }
run 0 run --help && { grep -q 'ptxgen run \[KEY\] --gguf FILE --tensor NAME' "$tmp/out" || fail "run --help: no --gguf usage line"; }

# --- list: every example key emits ------------------------------------------
if run 0 list; then
  [ -s "$tmp/out" ] || fail "list printed nothing"
  cp "$tmp/out" "$tmp/list"
  while read -r kind key params; do
    [ -n "$params" ] || fail "list line for '$kind' has no parameters text"
    case $key in
      "$kind":*) ;;
      *) fail "list: example key '$key' does not start with '$kind:'" ;;
    esac
    run 0 emit "$key" && { grep -q '^\.visible \.entry\|\.entry ' "$tmp/out" || fail "emit $key: no .entry"; }
    # the kinds with a CPU reference in `run`
    if echo " q4k_gemv q6k_gemv gelu gelu_erf silu swiglu geglu rope " | grep -q " $kind "; then
      run 0 run "$key" --cpu && { grep -q '^ref_ms=[0-9.]* checksum=[-0-9.e+]* ' "$tmp/out" || fail "run $key --cpu: no ref_ms/checksum line: $(cat "$tmp/out")"; }
    fi
  done <"$tmp/list"
fi

# --- emit: deterministic, -o writes the same bytes ---------------------------
key=q4k_gemv:k=512,n=777,m=3,sm=80
if run 0 emit $key; then
  cp "$tmp/out" "$tmp/first.ptx"
  [ -s "$tmp/err" ] && fail "emit $key wrote to stderr: $(head -c 300 "$tmp/err")"
  grep -q '^\.version ' "$tmp/first.ptx" || fail "emit $key: no .version line"
  grep -q '^\.target sm_80' "$tmp/first.ptx" || fail "emit $key: no .target sm_80 line"
  run 0 emit $key && { cmp -s "$tmp/out" "$tmp/first.ptx" || fail "emit $key twice: PTX differs"; }
  run 0 emit $key -o "$tmp/file.ptx" && { cmp -s "$tmp/file.ptx" "$tmp/first.ptx" || fail "emit -o: file differs from stdout"; }
  [ -s "$tmp/out" ] && fail "emit -o also wrote to stdout"
  # parameters in another order, sm given or defaulted, name the same kernel
  run 0 emit q4k_gemv:m=3,sm=80,n=777,k=512 && { cmp -s "$tmp/out" "$tmp/first.ptx" || fail "emit: parameter order changes the PTX"; }
fi
run 1 emit $key -o "$tmp/no/such/dir/file.ptx"

# --- bad keys: exit 2, "ptxgen: bad key '<key>': <why>" naming the problem ----
# bad_key KEY WORD: WORD must appear (as a word) in the reason
bad_key() {
  if run 2 emit "$1"; then
    line=$(grep "^ptxgen: bad key '$1': " "$tmp/err")
    if [ -z "$line" ]; then
      fail "bad key '$1': no \"ptxgen: bad key '$1': ...\" message; stderr: $(cat "$tmp/err")"
    elif [ -n "$2" ]; then
      why=${line#"ptxgen: bad key '$1': "}
      echo "$why" | grep -qw -- "$2" || fail "bad key '$1': reason '$why' does not name '$2'"
    fi
  fi
}
bad_key 'q4k_gemv:k=4000,n=4096,m=1' k
bad_key 'q4k_gemv:k=0,n=4096,m=1' k
bad_key 'q4k_gemv:k=4096,n=4096,m=0' m
bad_key 'q4k_gemv:k=4096,n=0,m=1' n
bad_key 'q4k_gemv:k=4096,n=4096,m=17' m
bad_key 'q6k_gemv:k=4096,n=4096,m=17' m
# the epilogues take m <= 8 (PTXGEN_GEMV_EPILOGUE_MAX_M)
bad_key 'q4k_gemv:k=4096,n=4096,m=9,glu=swiglu' glu
bad_key 'q6k_gemv:k=4096,n=4096,m=16,n2=1024,rope=neox,head_dim=128' rope
bad_key 'q4k_gemv:k=4096,n=4096,m=1,sm=61' sm
bad_key 'no_such_kind:k=4096,n=4096,m=1' no_such_kind
bad_key 'q4k_gemv:k=4096,n=4096,m=1,bogus=3' bogus
bad_key 'stream_read:n=0' n
bad_key '#!?garbage' ''
bad_key '' ''
# the same refusal from the other commands
run 2 check 'q4k_gemv:k=4000,n=4096,m=1' && { grep -q "^ptxgen: bad key 'q4k_gemv:k=4000,n=4096,m=1': " "$tmp/err" || fail "check: bad key message"; }
run 2 run 'q4k_gemv:k=4000,n=4096,m=1' --cpu && { grep -q "^ptxgen: bad key " "$tmp/err" || fail "run: bad key message"; }

# bad_run_key KEY WORD: `run KEY` (with or without --cpu) exits 2 before any
# work, with "ptxgen: bad key '<key>': <why>", WORD a word of the reason
bad_run_key() {
  for cpu in --cpu ""; do
    if run 2 run "$1" $cpu; then
      line=$(grep "^ptxgen: bad key '$1': " "$tmp/err")
      why=${line#"ptxgen: bad key '$1': "}
      [ -n "$line" ] && echo "$why" | grep -qw -- "$2" ||
        fail "run '$1' $cpu: want \"ptxgen: bad key '$1': ...\" naming '$2'; stderr: $(cat "$tmp/err")"
      [ -s "$tmp/out" ] && fail "run '$1' $cpu: wrote to stdout: $(head -c 300 "$tmp/out")"
    fi
  done
}
bad_run_key 'rope:mode=neox,head_dim=127,heads=32,kv_heads=8,m=1' head_dim
bad_run_key 'rope:mode=neox,head_dim=64,n_dims=128,heads=32,kv_heads=8,m=1' n_dims
bad_run_key 'rope:mode=neox,head_dim=64,n_dims=31,heads=32,kv_heads=8,m=1' n_dims
bad_run_key 'rope:mode=neox,head_dim=128,heads=32,kv_heads=5,m=1' kv_heads
bad_run_key 'rope:mode=spiral,head_dim=128,heads=32,kv_heads=8,m=1' mode
bad_run_key 'rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=17' m
bad_run_key 'rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=1,ext_factor=1' n_ctx_orig
bad_run_key 'gelu:n=0,m=1' n
bad_run_key 'swiglu:n=1048577,m=1' n
bad_run_key 'silu:n=4096,m=17' m

# --- run --cpu: the reference alone, deterministic per seed ------------------
small=q4k_gemv:k=512,n=37,m=3,sm=80
if run 0 run $small --cpu --seed 7; then
  grep -q '^ref_ms=[0-9.]* checksum=[-0-9.e+]* ' "$tmp/out" || fail "run --cpu: no ref_ms/checksum line: $(cat "$tmp/out")"
  grep -q "^$small seed=7 cpu\$" "$tmp/out" || fail "run --cpu: no '$small seed=7 cpu' line"
  sum7=$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")
  run 0 run $small --cpu --seed=7 && [ "$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")" = "$sum7" ] ||
    fail "run --cpu --seed 7 twice: checksums differ"
  run 0 run $small --cpu --seed 8 && [ "$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")" != "$sum7" ] ||
    fail "run --cpu: seeds 7 and 8 give the same checksum"
fi
# cpu_run_checksums KEY: run KEY --cpu with seeds 7, 7 and 8: the header line,
# a checksum, the same one twice for seed 7 and another for seed 8
cpu_run_checksums() {
  if run 0 run "$1" --cpu --seed 7; then
    grep -q '^[a-z_0-9]*:[^ ]* seed=7 cpu$' "$tmp/out" || fail "run $1 --cpu: no 'KEY seed=7 cpu' line: $(cat "$tmp/out")"
    grep -q '^ref_ms=[0-9.]* checksum=[-0-9.e+]* ' "$tmp/out" || fail "run $1 --cpu: no ref_ms/checksum line: $(cat "$tmp/out")"
    sum7=$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")
    case $sum7 in *nan* | *inf* | "") fail "run $1 --cpu: checksum '$sum7' is not a finite number" ;; esac
    run 0 run "$1" --cpu --seed=7 && [ "$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")" = "$sum7" ] ||
      fail "run $1 --cpu --seed 7 twice: checksums differ"
    run 0 run "$1" --cpu --seed 8 && [ "$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")" != "$sum7" ] ||
      fail "run $1 --cpu: seeds 7 and 8 give the same checksum"
  fi
}
for key in gelu:n=14337,m=3 gelu_erf:n=1001,m=2 silu:n=5,m=1 swiglu:n=4096,m=8,sm=80 geglu:n=3,m=2,sm=120 \
  silu:n=77,m=16 rope:mode=normal,head_dim=128,heads=32,kv_heads=8,m=1 rope:mode=neox,head_dim=64,heads=4,kv_heads=2,m=16 \
  rope:mode=neox,head_dim=64,n_dims=32,heads=6,kv_heads=3,m=8,sm=100,freq_factors=1,ext_factor=1,n_ctx_orig=4096,freq_scale=0.25; do
  cpu_run_checksums "$key"
done
# gated GEMV keys: deterministic per seed, and the epilogue changes y: plain,
# swiglu and geglu of the same weights and x give three different checksums
for key in q4k_gemv:k=512,n=37,m=3,glu=swiglu q6k_gemv:k=256,n=9,m=8,sm=80,glu=geglu; do
  cpu_run_checksums "$key"
done
# the largest batch, both formats
for key in q4k_gemv:k=512,n=37,m=16 q6k_gemv:k=256,n=9,m=16,sm=80; do
  cpu_run_checksums "$key"
done
gated_sums=""
for glu in "" ",glu=swiglu" ",glu=geglu"; do
  run 0 run "q6k_gemv:k=512,n=13,m=2$glu" --cpu --seed 3 &&
    gated_sums="$gated_sums $(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$tmp/out")"
done
[ "$(echo $gated_sums | tr ' ' '\n' | sort -u | wc -l)" -eq 3 ] ||
  fail "run --cpu: plain, swiglu and geglu q6k_gemv want three different checksums, got:$gated_sums"
run 1 run stream_read:n=1000 --cpu && { grep -q 'no CPU reference for stream_read' "$tmp/err" || fail "run stream_read --cpu: message"; }

# --- no driver: run and check --driver fail with the runtime's message ------
PTXQ_LIBCUDA=/nonexistent/libcuda.so.1
export PTXQ_LIBCUDA
for key in $small q4k_gemv:k=256,n=7,m=2,glu=swiglu geglu:n=1001,m=2 rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=1; do
  run 1 run $key && { grep -q '^ptxgen: run: ' "$tmp/err" || fail "run $key without a driver: no message"; }
done
run 1 check --driver $small && { grep -q 'no GPU driver' "$tmp/err" || fail "check --driver without a driver: message"; }
unset PTXQ_LIBCUDA

# --- check with ptxas, where there is one -----------------------------------
ptxas=$(command -v ptxas 2>/dev/null)
for dir in "$CUDA_HOME" "$CUDA_PATH" /usr/local/cuda; do
  [ -z "$ptxas" ] && [ -n "$dir" ] && [ -x "$dir/bin/ptxas" ] && ptxas=$dir/bin/ptxas
done
if [ -n "$ptxas" ]; then
  if run 0 check --ptxas "$ptxas" $small stream_read:n=1000,sm=90; then
    [ "$(grep -c ' via=ptxas$' "$tmp/out")" -eq 2 ] || fail "check: want 2 lines ending via=ptxas: $(cat "$tmp/out")"
    grep -q "^$small  entry=[A-Za-z_][A-Za-z0-9_]* registers=[0-9]* spill_stores=0 spill_loads=0 stack=0 shared_static=[0-9]* shared_dynamic=[0-9]* grid=[0-9]*,[0-9]*,[0-9]* block=[0-9]*,[0-9]*,[0-9]* via=ptxas\$" "$tmp/out" ||
      fail "check: line format: $(cat "$tmp/out")"
  fi
  run 0 check $small || true
  run 1 check --ptxas "$tmp/no-ptxas" $small
else
  echo "SKIP: check with ptxas (no ptxas found)"
fi

finish
