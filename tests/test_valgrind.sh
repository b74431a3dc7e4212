#!/bin/sh
# test_valgrind.sh: suite "unit", the `ptxgen` CLI under valgrind memcheck:
# no invalid read or write, no use of an uninitialised value, and no leak
# (definite or indirect) on the list, emit, gguf and run --cpu paths, nor
# on a few failing ones (bad key, missing file, run without a driver).
#
#   tests/test_valgrind.sh PATH/TO/ptxgen FIXTURES_DIR [B_SANITIZE]
#
# Skips (77) when valgrind is missing (tests/run installs it as root) or
# when ptxgen was built with sanitizers (B_SANITIZE, meson's b_sanitize, not
# "none"): valgrind cannot run those. Prints each failed expectation; exits
# 1 if any.

bin=${1:?usage: test_valgrind.sh PATH/TO/ptxgen FIXTURES_DIR [B_SANITIZE]}
fixtures=${2:?usage: test_valgrind.sh PATH/TO/ptxgen FIXTURES_DIR [B_SANITIZE]}
sanitize=${3:-none}

if ! command -v valgrind >/dev/null 2>&1; then
  echo "test_valgrind.sh: skipped: valgrind not found"
  exit 77
fi
if [ "$sanitize" != none ]; then
  echo "test_valgrind.sh: skipped: ptxgen is built with -Db_sanitize=$sanitize"
  exit 77
fi
. "$(dirname "$0")/common.sh"
use_fixtures "$fixtures"

# No driver is ever loaded, also on a machine with one: libcuda is not
# memcheck-clean, and the paths checked here must not need it.
PTXQ_LIBCUDA=/nonexistent/libcuda.so.1
export PTXQ_LIBCUDA

# A status valgrind alone returns: an error or a leak it counts.
valgrind_error=99

# vrun EXPECTED_STATUS ARGS...: ptxgen ARGS under memcheck, its output in
# $tmp/out, ptxgen's and valgrind's messages in $tmp/err.
vrun() {
  want=$1
  shift
  valgrind -q --tool=memcheck --error-exitcode=$valgrind_error --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-origins=yes "$bin" "$@" >"$tmp/out" 2>"$tmp/err"
  got=$?
  if [ "$got" -eq "$valgrind_error" ]; then
    fail "ptxgen $*: valgrind found errors:"
    sed -n '/^==[0-9]*==/p' "$tmp/err" | head -n 80
  elif [ "$got" -ne "$want" ]; then
    fail "ptxgen $* exited $got under valgrind, want $want; stderr: $(head -c 600 "$tmp/err")"
  fi
}

# The generator alone.
vrun 0 list
vrun 0 emit q4k_gemv:k=512,n=96,m=2
vrun 0 emit q6k_gemv:k=256,n=33,m=3,glu=swiglu -o "$tmp/q6k.ptx"
vrun 0 emit rope:mode=neox,head_dim=64,heads=4,kv_heads=2,m=2,freq_factors=1
vrun 2 emit q4k_gemv:k=100,n=1,m=1

# The GGUF reader.
vrun 0 gguf "$gguf"
vrun 1 gguf "$tmp/no-such-file.gguf"
head -c 1000 "$gguf" >"$tmp/truncated.gguf"
vrun 1 gguf "$tmp/truncated.gguf"

# The CPU references (their threads included).
vrun 0 run q4k_gemv:k=512,n=96,m=2 --cpu --seed 3
vrun 0 run q6k_gemv:k=256,n=40,m=1 --cpu
vrun 0 run swiglu:n=300,m=2 --cpu
vrun 0 run rope:mode=normal,head_dim=32,heads=4,kv_heads=1,m=2 --cpu
vrun 0 run --gguf "$gguf" --tensor blk.0.attn_q.weight --cpu --out "$tmp/y"
vrun 0 run --gguf "$gguf" --tensor blk.0.ffn_down.weight --m 2 --cpu
vrun 1 run --gguf "$gguf" --tensor no.such.tensor --cpu

# Without a driver: the runtime's failure path.
vrun 1 run q4k_gemv:k=256,n=8,m=1
vrun 1 check --driver gelu:n=64,m=1

finish
