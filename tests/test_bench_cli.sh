#!/bin/sh
# test_bench_cli.sh: suite "unit", what of `ptxq-bench` runs without a GPU:
# usage and exit statuses, --list-keys, and the PTX-generation rows
# (--kernels gen), their table and their JSON.
#
#   tests/test_bench_cli.sh PATH/TO/ptxq-bench

bin=${1:?usage: test_bench_cli.sh PATH/TO/ptxq-bench}
. "$(dirname "$0")/common.sh"

run 0 --help && { grep -q 'usage: ptxq-bench' "$tmp/out" || fail "--help: no usage on stdout"; }
run 2 --kernels bogus
run 2 --kernels gen --reps 0
run 0 --list-keys && cp "$tmp/out" "$tmp/keys"
grep -q '^q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024$' "$tmp/keys" ||
  fail "--list-keys: no q, k, v kernel of the decode step"

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
finish
