#!/usr/bin/env bash
# Peak memory against a clip's length, for two built checkouts in turn (A, B, A, B...): one sentence
# said 1, 15 and 60 times (about 7, 110 and 440 s of video), to a file and to stdout (`--output -`),
# photo seen. Prints each run's peak RSS (`/usr/bin/time -f %M`) and wall time.
#   bash scripts/bench-memory.sh /path/to/checkout-a /path/to/checkout-b [rounds]
# Both use this checkout's portrait. Set NODE_OPTIONS or MALLOC_ARENA_MAX around it to see their effect.
set -euo pipefail
a=${1:?usage: bench-memory.sh CHECKOUT_A CHECKOUT_B [ROUNDS]}
b=${2:?usage: bench-memory.sh CHECKOUT_A CHECKOUT_B [ROUNDS]}
rounds=${3:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
portrait="$here/tests/fixtures/grace_hopper.jpg"
one='This video was made from one photo and a few sentences, on an ordinary computer, without a graphics card.'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { # checkout text output, under /usr/bin/time when TIMED is set
  ${TIMED:+/usr/bin/time -o "$work/time.txt" -f '%M %e'} node "$1/packages/cli/dist/bin.js" --storage "$work/storage-$(basename "$1")" \
    pipeline run "$2" --avatar "$portrait" --output "$3" --quality medium --max-seconds 3600
}
# a first run per checkout, so that every measured one finds the photo seen
for tree in "$a" "$b"; do run "$tree" "$one" "$work/warm.mp4" > /dev/null 2>&1; done
for ((i = 1; i <= rounds; i++)); do
  for times in 1 15 60; do
    text=$one
    for ((k = 1; k < times; k++)); do text="$text $one"; done
    for output in file stdout; do
      for tree in "$a" "$b"; do
        target="$work/out.mp4"
        [ "$output" = stdout ] && target=-
        TIMED=1 run "$tree" "$text" "$target" > /dev/null 2> "$work/err.txt" \
          || { echo "$(basename "$tree") failed:"; tail -3 "$work/err.txt"; continue; }
        read -r kb seconds < <(tail -1 "$work/time.txt")
        printf '%-24s %2sx %-6s peak %4d MB  wall %6.2f s\n' "$(basename "$tree")" "$times" "$output" $((kb / 1024)) "$seconds"
      done
    done
  done
done
