#!/bin/sh
# test_plot.sh: suite "unit", bench/plot on a committed ptxq-bench JSON file:
# a PNG comes out; a file without rows and bad usage are refused. Skips
# (77) where no Python 3 with matplotlib is found.
#
#   tests/test_plot.sh PATH/TO/bench/plot PATH/TO/results.json
plot=${1:?usage: test_plot.sh PLOT RESULTS.json}
json=${2:?usage: test_plot.sh PLOT RESULTS.json}
bin=$plot
. "$(dirname "$0")/common.sh"

if ! python3 -c 'import matplotlib' 2>/dev/null && ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  echo "no Python 3 with matplotlib: skipped"
  exit 77
fi
"$plot" "$json" "$tmp/out.png" >"$tmp/out" 2>&1 || fail "bench/plot $json: exit $?: $(cat "$tmp/out")"
head -c 4 "$tmp/out.png" 2>/dev/null | grep -q PNG || fail "bench/plot: $tmp/out.png is not a PNG"
echo '{"results": []}' >"$tmp/empty.json"
"$plot" "$tmp/empty.json" "$tmp/empty.png" >"$tmp/out" 2>&1
[ $? -eq 1 ] || fail "bench/plot on a file without rows: want exit 1"
"$plot" >"$tmp/out" 2>&1
[ $? -eq 2 ] || fail "bench/plot without arguments: want exit 2"
finish
