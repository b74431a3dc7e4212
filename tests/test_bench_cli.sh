#!/bin/sh
# test_bench_cli.sh: suite "unit", what of `ptxq-bench` runs without a GPU:
# usage and exit statuses, --list-keys, the PTX-generation rows
# (--kernels gen), their table and their JSON, and the first-use rows
# (--kernels first) without a driver: they say that nothing was measured.
#
#   tests/test_bench_cli.sh PATH/TO/ptxq-bench

bin=${1:?usage: test_bench_cli.sh PATH/TO/ptxq-bench}
. "$(dirname "$0")/common.sh"

run 0 --help && {
  grep -q 'usage: ptxq-bench' "$tmp/out" || fail "--help: no usage on stdout"
  grep -q 'first (only when named)' "$tmp/out" || fail "--help: no kernel group 'first'"
}
run 2 --kernels bogus && { grep -q 'gen, first' "$tmp/err" || fail "--kernels bogus: the groups are not named"; }
run 2 --kernels gen --reps 0
run 0 --list-keys && cp "$tmp/out" "$tmp/keys"
grep -q '^q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024$' "$tmp/keys" ||
  fail "--list-keys: no q, k, v kernel of the decode step"
# the GEMV rows go to m = 16 by default, the decode step to 8 (--m 16 adds it)
grep -q '^q6k_gemv:k=4096,n=128256,m=16,sm=90$' "$tmp/keys" || fail "--list-keys: no m=16 GEMV row"
grep -q 'm=16,sm=90,n2=' "$tmp/keys" && fail "--list-keys: a decode-step kernel at m=16 by default"
# the decode step's bytes through the read probe, with and without programmatic launch
grep -q '^stream_read:n=3010560,sm=90,pdl=1$' "$tmp/keys" || fail "--list-keys: no read-step kernel (Q6_K down, pdl=1)"
grep -q '^stream_read:n=884736,sm=90$' "$tmp/keys" || fail "--list-keys: no read-step kernel (q, k, v)"
run 0 --list-keys --m 16 && {
  grep -q '^q4k_gemv:k=4096,n=4096,m=16,sm=90,n2=1024,n3=1024$' "$tmp/out" ||
    fail "--list-keys --m 16: no q, k, v kernel of the decode step at m=16"
  grep -q '^swiglu:n=14336,m=16,sm=90$' "$tmp/out" || fail "--list-keys --m 16: no unfused SwiGLU at m=16"
}
# with tensor cores: the library's tensor-core kernels, the gated FFN
# kernel up to m = 8 and RoPE apart
run 0 --tensor-cores --kernels decode --list-keys --m 4,8,16 && {
  grep -q '^q4k_gemv:k=4096,n=14336,m=8,sm=90,tc=1,glu=swiglu$' "$tmp/out" ||
    fail "--tensor-cores --list-keys: no tensor-core gated FFN kernel at m=8"
  grep -q '^q4k_gemv:k=4096,n=14336,m=16,sm=90,tc=1$' "$tmp/out" ||
    fail "--tensor-cores --list-keys: no tensor-core up product at m=16"
  grep -q '^q4k_gemv:k=4096,n=4096,m=4,sm=90,tc=1,n2=1024,n3=1024,rope=neox,' "$tmp/out" ||
    fail "--tensor-cores --list-keys: no RoPE in the tensor-core q, k, v kernel at m=4"
  grep -q '^rope:.*,m=8,' "$tmp/out" || fail "--tensor-cores --list-keys: no RoPE kernel at m=8"
  grep -q 'm=\(8\|16\),.*rope=' "$tmp/out" && fail "--tensor-cores --list-keys: RoPE in a q, k, v kernel past m=4"
  grep -q 'q4k_gemv:[^t]*$' "$tmp/out" && fail "--tensor-cores --list-keys: a Q4_K product off the tensor cores"
}
run 2 --m 17 && { grep -q '1\.\.16' "$tmp/err" || fail "--m 17: the limit is not named"; }

run 0 --kernels gen --quick --json "$tmp/gen.json" && {
  keys=$(sort -u "$tmp/keys" | wc -l)
  rows=$(grep -c '"mode": "generate"' "$tmp/gen.json")
  [ "$rows" -eq "$keys" ] || fail "--kernels gen: $rows JSON rows for $keys keys"
  grep -q '^PTX generation: [0-9]* kernels, slowest' "$tmp/out" || fail "--kernels gen: no summary line"
  grep -q '"median_us": [0-9]' "$tmp/gen.json" || fail "--kernels gen: no median_us in the JSON"
}
run 0 --kernels gen --quick --m 1 && {
  grep -q 'q4k_gemv:k=4096,n=4096,m=1,sm=90 ' "$tmp/out" || fail "--kernels gen --m 1: no m=1 GEMV row"
  grep -q 'm=8' "$tmp/out" && fail "--kernels gen --m 1: a row for m=8"
}

# --kernels first: its keys, and without a driver (forced, so that this
# runs the same on a GPU machine) one line saying nothing was measured.
run 0 --kernels first --list-keys && {
  for key in 'q4k_gemv:k=4096,n=4096,m=1,sm=90' 'q4k_gemv:k=4096,n=14336,m=8,sm=90' \
             'q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000' \
             'q4k_gemv:k=4096,n=14336,m=1,sm=90,glu=swiglu' 'silu:n=14336,m=1,sm=90' \
             'rope:mode=neox,head_dim=128,n_dims=128,heads=32,kv_heads=8,m=1,sm=90,base=500000'; do
    grep -qx "$key" "$tmp/out" || fail "--kernels first --list-keys: no $key"
  done
  [ "$(grep -c '' "$tmp/out")" -eq 9 ] || fail "--kernels first --list-keys: want the read key and 8 keys"
}
export PTXQ_LIBCUDA=/nonexistent/libcuda.so.1
run 3 --kernels first --json "$tmp/first.json" && {
  grep -q '^first use: no GPU (.*cannot load /nonexistent/libcuda.so.1.*): nothing measured$' "$tmp/out" ||
    fail "--kernels first without a driver: no 'nothing measured' line: $(head -c 300 "$tmp/out")"
  [ -e "$tmp/first.json" ] && fail "--kernels first without a driver: wrote a JSON file"
}
run 3 --kernels gen,first --quick --json "$tmp/genfirst.json" && {
  grep -q 'nothing measured' "$tmp/out" || fail "--kernels gen,first without a driver: no 'nothing measured' line"
  grep -q '"mode": "generate"' "$tmp/genfirst.json" || fail "--kernels gen,first: no generation rows in the JSON"
  grep -q 'first-use' "$tmp/genfirst.json" && fail "--kernels gen,first without a driver: first-use rows in the JSON"
}
# The hidden child the first-use rows start: its one line, and its statuses.
run 3 --first-use-child silu:n=256,m=1,sm=90 &&
  { grep -q '^first-use-child: no-gpu ' "$tmp/out" || fail "--first-use-child without a driver: no no-gpu line"; }
run 1 --first-use-child &&
  { grep -q '^first-use-child: error usage' "$tmp/out" || fail "--first-use-child without a key: no usage line"; }
unset PTXQ_LIBCUDA
finish
