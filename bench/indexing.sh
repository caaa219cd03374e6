#!/usr/bin/env bash
# Benchmark of the indexing worker (issue 5, "Measure"): medians of alternating runs.
#
#   bench/indexing.sh [CORPUS] [RUNS]      (defaults: ~/.cargo/registry/src, 9)
#
# (a) cold full index (fresh database)   vs  `xargs -0 cat` over exactly the files indexed
# (b) re-index with nothing changed      vs  `find CORPUS -type f -printf '%s %T@\n'`
# Each of the four commands runs RUNS times, interleaved (cold, cat, no-change, find), all with
# a warm page cache (one warm-up round first). Needs: a release build, sqlite3, awk.
set -euo pipefail

corpus=$(realpath "${1:-$HOME/.cargo/registry/src}")
runs=${2:-9}
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${VIGIL:-$here/target/release/vigil}
[ -x "$vigil" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/config.ron" <<RON
(data_dir: "$work/var", workers: [(name: "bench", kind: Indexing(roots: ["$corpus"], interval: "1h"))])
RON
db="$work/var/index.sqlite"
index() { "$vigil" --config "$work/config.ron" worker indexing --once 2>>"$work/log"; }

# Warm-up, and the exact file list the index holds.
index
sqlite3 "$db" "SELECT p.root || '/' || f.path FROM files f JOIN projects p ON p.id = f.project_id" \
    | tr '\n' '\0' >"$work/files0"
files=$(sqlite3 "$db" "SELECT count(*) FROM files")
bytes=$(sqlite3 "$db" "SELECT sum(size) FROM files")
projects=$(sqlite3 "$db" "SELECT count(*) FROM projects")
xargs -0 cat <"$work/files0" >/dev/null
find "$corpus" -type f -printf '%s %T@\n' >/dev/null

# seconds COMMAND... : wall time of one run, in seconds.
seconds() {
    local s e
    s=$EPOCHREALTIME
    "$@"
    e=$EPOCHREALTIME
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }'
}
cold() { rm -rf "$work/var"; seconds index; }
cat_all() { seconds sh -c 'xargs -0 cat <"$1" >/dev/null' _ "$work/files0"; }
nochange() { seconds index; }
find_all() { seconds sh -c 'find "$1" -type f -printf "%s %T@\n" >/dev/null' _ "$corpus"; }

: >"$work/cold"; : >"$work/cat"; : >"$work/nochange"; : >"$work/find"
for _ in $(seq "$runs"); do
    cold >>"$work/cold"
    cat_all >>"$work/cat"
    nochange >>"$work/nochange"
    find_all >>"$work/find"
done

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
c=$(median "$work/cold"); k=$(median "$work/cat"); n=$(median "$work/nochange"); f=$(median "$work/find")
errors=$(grep -c "cannot read" "$work/log" || true)

echo "corpus: $corpus: $files files in $projects projects, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB; $runs alternating runs, medians; $(nproc) cores"
awk -v c="$c" -v k="$k" -v n="$n" -v f="$f" -v files="$files" -v bytes="$bytes" 'BEGIN {
    printf "(a) cold full index  %.3f s  (%.0f files/s, %.0f MB/s)  vs xargs -0 cat %.3f s  ratio %.2f (goal <= 0.5)\n", c, files / c, bytes / 1e6 / c, k, c / k
    printf "(b) no-change cycle  %.3f s  (%.0f files/s)              vs find -printf  %.3f s  ratio %.2f (goal <= 1.0)\n", n, files / n, f, n / f
}'
echo "runs (s): cold $(tr '\n' ' ' <"$work/cold")"
echo "          cat  $(tr '\n' ' ' <"$work/cat")"
echo "          none $(tr '\n' ' ' <"$work/nochange")"
echo "          find $(tr '\n' ' ' <"$work/find")"
[ "$errors" = 0 ] || echo "note: $errors per-file read errors in the worker's log"
