#!/usr/bin/env bash
# Benchmark of `vigil reload` (issue 12, "Performance"): a 1000-worker config in which one
# worker's argv changed. Reports, per run, the wall time of `vigil reload` (the CLI's whole
# run: the changed worker is stopped and running again inside it, so it bounds how long after
# that the command returns); checks that the changed worker runs the new argv and that the 999
# others kept their pid and generation.
#
#   bench/reload.sh [WORKERS] [RUNS]      (defaults: 1000, 9)
#
# Needs: a release build (cargo build --release), jq.
set -euo pipefail

n=${1:-1000}
runs=${2:-9}
here=$(cd "$(dirname "$0")/.." && pwd)
vigil=${VIGIL:-$here/target/release/vigil}
[ -x "$vigil" ] || { echo "build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# config ARG: N sleepers; the first runs `sleep ARG`, the others `sleep 100000`.
config() {
    {
        echo "(data_dir: \"$work/var\", workers: ["
        echo "  (name: \"w0\", kind: Command(argv: [\"sleep\", \"$1\"]), start_secs: \"0s\"),"
        for i in $(seq 1 $((n - 1))); do
            echo "  (name: \"w$i\", kind: Command(argv: [\"sleep\", \"100000\"]), start_secs: \"0s\"),"
        done
        echo "])"
    } >"$work/config.ron.new"
    mv "$work/config.ron.new" "$work/config.ron"
}
v() { "$vigil" --config "$work/config.ron" "$@"; }
now_ms() { date +%s%3N; }

config 200000
v serve 2>"$work/serve.log" &
server=$!
until v status --json 2>/dev/null | jq -e "length == $n and all(.state == \"running\")" >/dev/null; do
    sleep 0.1
done
echo "vigil reload, $n workers, one argv changed; $runs runs"
totals=()
for r in $(seq 1 "$runs"); do
    v status --json | jq -c '[.[] | {name, pid, generation}]' >"$work/before.json"
    config $((200000 + r))
    t0=$(now_ms)
    report=$(v reload --json)
    t1=$(now_ms)
    echo "$report" | jq -e '.restarted == ["w0"] and (.unchanged | length) == '"$((n - 1))" >/dev/null \
        || { echo "unexpected report: $report" >&2; exit 1; }
    v status --json | jq -c '[.[] | {name, pid, generation}]' >"$work/after.json"
    same=$(jq -n --slurpfile a "$work/before.json" --slurpfile b "$work/after.json" \
        '[range(1; $a[0] | length) as $i | select($a[0][$i] == $b[0][$i])] | length')
    [ "$same" -eq $((n - 1)) ] || { echo "only $same of $((n - 1)) kept pid and generation" >&2; exit 1; }
    pid=$(v status w0 --json | jq '.[0].pid')
    [ "$(tr '\0' ' ' <"/proc/$pid/cmdline")" = "sleep $((200000 + r)) " ] \
        || { echo "w0 does not run the new argv" >&2; exit 1; }
    totals+=($((t1 - t0)))
    echo "run $r: reload ${totals[-1]} ms (w0 restarted with the new argv); $same kept pid and generation"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
echo "median: reload $(median "${totals[@]}") ms (an upper bound of how long after the changed worker runs again it returns)"
v shutdown >/dev/null
wait "$server" || true
server=
