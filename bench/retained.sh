#!/usr/bin/env bash
# Memory per retained message, and restart time with them: one client stores N retained messages
# (QoS 1, 64-byte payloads, topics site/{i/1000}/sensor/{i%1000}) in cicada (RocksDB and memory
# backends) and in Debian's mosquitto, in the same run; then cicada on RocksDB is killed (-9) and
# restarted, and the time until it listens again (load + restore) and its memory are reported.
# Usage: bench/retained.sh [messages]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
. bench/common.sh
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

PORT=18950
run() { # label, then the broker command; leaves the broker running in $pid
    local label=$1; shift
    "$@" >/dev/null 2>&1 & pid=$!
    wait_port $PORT
    $BENCH --port $PORT --broker-pid $pid --label "$label" --scenario retained --clients "$N"
}

for backend in rocksdb memory; do
    PORT=$((PORT + 1))
    conf=$(mktemp); printf '[storage]\nbackend = "%s"\n' "$backend" > "$conf"
    data=$(mktemp -d)
    broker=(target/release/cicada --config "$conf" --listen "127.0.0.1:$PORT" --log-level warn --data-dir "$data")
    run "cicada-$backend" "${broker[@]}"
    if [ "$backend" = rocksdb ]; then
        kill -9 $pid; wait $pid 2>/dev/null || true
        started=$(date +%s.%N)
        "${broker[@]}" >/dev/null 2>&1 & pid=$!
        wait_port $PORT
        echo "cicada-rocksdb restart with $N retained: listening after $(echo "$(date +%s.%N) - $started" | bc) s, resident memory $(rss_mib $pid) MiB, on disk $(du -sm "$data" | cut -f1) MiB"
    fi
    kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
done
PORT=$((PORT + 1))
conf=$(mktemp); printf 'listener %s 127.0.0.1\nallow_anonymous true\n' $PORT > "$conf"
run mosquitto "$MOSQUITTO" -c "$conf"
kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
