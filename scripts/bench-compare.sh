#!/usr/bin/env bash
# End-to-end runs of two built checkouts, interleaved (A, B, A, B...), so that both see the same machine:
# this machine's speed drifts by more than most changes move a figure. Prints each run's stage times and
# wall time, then the median wall time of each checkout.
#   bash scripts/bench-compare.sh /path/to/checkout-a /path/to/checkout-b [rounds]
# Each checkout must be built (npm run build); both use this checkout's portrait. ARGS_A / ARGS_B add flags to
# one side's runs, so one checkout can be compared with itself: ARGS_A='--captions none' bash ... . . 5
set -euo pipefail
a=${1:?usage: bench-compare.sh CHECKOUT_A CHECKOUT_B [ROUNDS]}
b=${2:?usage: bench-compare.sh CHECKOUT_A CHECKOUT_B [ROUNDS]}
rounds=${3:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
portrait="$here/tests/fixtures/grace_hopper.jpg"
text='Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ((i = 1; i <= rounds; i++)); do
  for side in a b; do
    tree=$a
    [ "$side" = b ] && tree=$b
    start=$(date +%s.%N)
    node "$tree/packages/cli/dist/bin.js" --storage "$work/$side" --json pipeline run "$text" --avatar "$portrait" \
      --output "$work/$side.mp4" --quality medium $( [ "$side" = a ] && echo "${ARGS_A:-}" || echo "${ARGS_B:-}" ) 2>/dev/null >"$work/result.json"
    end=$(date +%s.%N)
    wall=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
    stages=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.stages.map((s) => `${s.stage} ${s.wallSeconds.toFixed(2)}`).join(", "))' "$work/result.json")
    echo "$side $wall s | $stages"
    echo "$wall" >>"$work/$side.times"
  done
done
for side in a b; do
  printf '%s: median %s s over %s runs\n' "$side" "$(sort -n "$work/$side.times" | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')" "$rounds"
done
