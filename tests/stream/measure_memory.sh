#!/usr/bin/env bash
# Streams multi-GB pickle files through `pikl dis`, `pikl show` and `pikl convert` and reports
# each one's peak memory (max RSS) against the file size. Two inputs:
#   stream.pkl  a stream of independent ~1 MiB pickles (protocols 1, 2), GIB in all
#   single.pkl  one pickle of GIB: a list of 64 KiB bytes objects
# usage: tests/stream/measure_memory.sh [GIB=2] [PIKL=target/release/pikl]
set -euo pipefail
gib=${1:-2}
pikl=${2:-target/release/pikl}
dir=${TMPDIR:-/tmp}/pikl-stream
mkdir -p "$dir"
python3 - "$dir" "$gib" <<'PY'
import os, pickle, struct, sys
d, gib = sys.argv[1], float(sys.argv[2])
target = int(gib * (1 << 30))
path = os.path.join(d, "stream_%sg.pkl" % sys.argv[2])
if not os.path.exists(path):
    records = [{"id": i, "name": "user%d" % i, "score": i * 0.5, "tags": ["a", "b"], "blob": b"x" * 40}
               for i in range(8000)]
    # Protocols 1 and 2: each pickle reuses memo keys 0..n, so earlier objects become garbage.
    # (Protocol 4+ MEMOIZE numbers keys by memo size, so a stream read with one shared memo
    # keeps every object alive, in CPython as in pikl.)
    chunks = [pickle.dumps(records, 2), pickle.dumps(records, 1)]
    with open(path, "wb") as f:
        n = i = 0
        while n < target:
            f.write(chunks[i % 2]); n += len(chunks[i % 2]); i += 1
path = os.path.join(d, "single_%sg.pkl" % sys.argv[2])
if not os.path.exists(path):
    item = b"B" + struct.pack("<I", 65536) + b"a" * 65536
    with open(path, "wb") as f:
        f.write(b"\x80\x03]q\x00")
        n = 0
        while n < target:
            f.write(b"(" + item * 1000 + b"e"); n += 1000 * len(item)
        f.write(b".")
PY
for name in stream single; do
  file="$dir/${name}_${gib}g.pkl"
  size=$(stat -c %s "$file")
  echo "$name: $file, $((size / 1048576)) MiB"
  for cmd in "dis" "show --max-chars 0" "convert -p 5 -o /dev/null"; do
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    rss=$( { /usr/bin/time -f "%M" "$pikl" $cmd "$file" > /dev/null; } 2>&1 | tail -1 )
    end=$(date +%s.%N)
    printf "  pikl %-28s peak RSS %8d KiB = %6.2f%% of the file, %5.1f s\n" "$cmd" "$rss" \
      "$(echo "$rss * 1024 * 100 / $size" | bc -l)" "$(echo "$end - $start" | bc -l)"
  done
done
