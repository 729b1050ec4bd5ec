#!/usr/bin/env bash
# The cost of durability: QoS 1 pairs with persistent sessions (so every delivery is stored and every
# PUBACK waits for storage) against cicada with each storage setting, and Debian's mosquitto (which
# keeps QoS 1 state in memory and saves it only periodically) in the same run.
# Usage: bench/durability.sh [seconds per run] [pairs]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-5}
PAIRS=${2:-10}
. bench/common.sh

PORT=18900
run() { # label, then the broker command
    local label=$1; shift
    PORT=$((PORT + 1))
    "$@" >/dev/null 2>&1 & local pid=$!
    wait_port $PORT
    $BENCH --port $PORT --broker-pid $pid --label "$label" --seconds "$SECONDS_PER" \
        --scenario pairs --clients "$PAIRS" --qos 1 --persistent || echo "$label failed"
    kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
}

for setting in "rocksdb always" "rocksdb interval" "rocksdb never" "memory always"; do
    read -r backend fsync <<<"$setting"
    conf=$(mktemp); printf '[storage]\nbackend = "%s"\nfsync = "%s"\n' "$backend" "$fsync" > "$conf"
    label="cicada-$backend"; [ "$backend" = rocksdb ] && label="cicada-fsync-$fsync"
    run "$label" target/release/cicada --config "$conf" --listen "127.0.0.1:$((PORT + 1))" \
        --log-level warn --data-dir "$(mktemp -d)"
done
conf=$(mktemp); printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n' $((PORT + 1)) > "$conf"
run mosquitto "$MOSQUITTO" -c "$conf"
