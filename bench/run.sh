#!/usr/bin/env bash
# The broker benchmark, one command: every scenario against cicada, cicada-uring, Debian's mosquitto and
# rumqttd (installed here with `cargo install`, not in CI), each on a fresh broker, in one run.
# Writes docs/bench/results.txt (the raw RESULT lines), the table in docs/benchmarks.md (between the
# `bench:begin`/`bench:end` markers) and docs/bench/throughput.svg + docs/bench/latency.svg.
# Usage: bench/run.sh [seconds per scenario]   (default 5)
#        BENCH_ONLY=fanin-qos1 bench/run.sh 5    reruns one scenario, keeping the other results
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-5}

. bench/common.sh
cargo build --release --locked -p cicada-shell-monoio
RUMQTTD=$(command -v rumqttd || echo target/rumqttd/bin/rumqttd)
if [ ! -x "$RUMQTTD" ]; then
    # rumqttd 0.20's lock file pins a `metrics` release today's rustc refuses: resolve afresh.
    cargo install rumqttd --version 0.20.0 --root target/rumqttd --target-dir target/rumqttd-build
    RUMQTTD=target/rumqttd/bin/rumqttd
fi
# 19,000 connections need as many descriptors in the broker and in the load tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 19500 ] || echo "warning: ulimit -n is $(ulimit -n); the 19k idle scenario will fail" >&2

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Background processes must not hold the $(...) pipe open.
start() {
    local broker=$1 port=$2 dir=$WORK/$1-$2
    mkdir -p "$dir"
    case $broker in
        cicada|cicada-uring)
            printf '[server]\nlisten = ["127.0.0.1:%s"]\ndata_dir = "%s"\n[storage]\nbackend = "rocksdb"\nfsync = "interval"\n[log]\nlevel = "warn"\n' \
                "$port" "$dir" > "$dir/cicada.toml"
            "target/release/$broker" -c "$dir/cicada.toml" >"$dir/log" 2>&1 & echo $! ;;
        mosquitto)
            printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\nmax_connections -1\n' "$port" > "$dir/m.conf"
            "$MOSQUITTO" -c "$dir/m.conf" >"$dir/log" 2>&1 & echo $! ;;
        rumqttd)
            printf 'id = 0\n[router]\nid = 0\nmax_connections = 20010\nmax_outgoing_packet_count = 200\nmax_segment_size = 104857600\nmax_segment_count = 10\n[v4.1]\nname = "v4-1"\nlisten = "127.0.0.1:%s"\nnext_connection_delay_ms = 0\n[v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 20480\nmax_inflight_count = 100\ndynamic_filters = true\n' \
                "$port" > "$dir/r.toml"
            "$RUMQTTD" -q -c "$dir/r.toml" >"$dir/log" 2>&1 & echo $! ;;
    esac
}

SCENARIOS=(
    "fanout-qos0|--scenario fan-out --clients 100 --qos 0"
    "pairs-qos1|--scenario pairs --clients 100 --qos 1 --persistent"
    # 100 publishers at 1,000 msg/s each: one subscriber cannot take unthrottled QoS 1 from 100
    # publishers (that overload is the `flood` scenario's subject).
    "fanin-qos1|--scenario fan-in --clients 100 --qos 1 --persistent --rate 1000"
    "latency-qos0|--scenario pairs --clients 10 --qos 0 --rate 2000"
    "latency-qos1|--scenario pairs --clients 10 --qos 1 --rate 2000"
    "idle-19k|--scenario idle --clients 19000"
    "connects|--scenario handshakes --clients 50"
    "flood|--scenario flood --clients 10"
)
BROKERS=(cicada cicada-uring mosquitto rumqttd)
mkdir -p docs/bench
RESULTS=docs/bench/results.txt
if [ -n "${BENCH_ONLY:-}" ] && [ -f "$RESULTS" ]; then
    grep -v "^RESULT name=$BENCH_ONLY " "$RESULTS" > "$WORK/kept" || true
    cp "$WORK/kept" "$RESULTS"
else
    echo "# bench/run.sh $SECONDS_PER, $(date -u +%Y-%m-%d), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" > "$RESULTS"
fi
PORT=${BENCH_PORT:-21000}
for entry in "${SCENARIOS[@]}"; do
    name=${entry%%|*}; args=${entry#*|}
    if [ -n "${BENCH_ONLY:-}" ] && [ "$name" != "$BENCH_ONLY" ]; then continue; fi
    for broker in "${BROKERS[@]}"; do
        PORT=$((PORT + 1))
        pid=$(start "$broker" "$PORT")
        if ! wait_port "$PORT"; then
            echo "RESULT broker=$broker name=$name failed=start" | tee -a "$RESULTS"; kill "$pid" 2>/dev/null || true; continue
        fi
        # shellcheck disable=SC2086
        out=$($BENCH --port "$PORT" --broker-pid "$pid" --label "$broker" --seconds "$SECONDS_PER" $args 2>&1) \
            || out="RESULT broker=$broker failed=bench $(tail -1 <<<"$out" | tr ' ' '_')"
        grep -v '^RESULT' <<<"$out" || true
        grep '^RESULT' <<<"$out" | sed "s/^RESULT /RESULT name=$name /" >> "$RESULTS" || true
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
        sleep 0.5
    done
done
python3 bench/report.py "$RESULTS" docs/benchmarks.md docs/bench
