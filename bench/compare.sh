#!/usr/bin/env bash
# Runs the same load scenarios against cicada and Debian's mosquitto in one run and prints the ratio.
# Usage: bench/compare.sh [seconds per scenario]   (installs the `mosquitto` package if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-5}

. bench/common.sh

# Background processes must not hold the $(...) pipe open, or the substitution waits for them to exit.
start_cicada() {
    target/release/cicada --listen "127.0.0.1:$1" --log-level warn --data-dir "$(mktemp -d)" >/dev/null 2>&1 &
    echo $!
}
start_mosquitto() {
    local conf; conf=$(mktemp)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n' "$1" > "$conf"
    "$MOSQUITTO" -c "$conf" >/dev/null 2>&1 & echo $!
}

SCENARIOS=(
    "--scenario pairs --clients 10 --qos 0"
    "--scenario pairs --clients 10 --qos 1"
    "--scenario fan-out --clients 100 --qos 0 --rate 1000"
    "--scenario fan-in --clients 50 --qos 1"
    "--scenario idle --clients 1000"
)

PORT=18830
for scenario in "${SCENARIOS[@]}"; do
    # Fresh brokers on fresh ports for every scenario, so a broker still draining cannot interfere.
    PORT=$((PORT + 2)); CP=$PORT; MP=$((PORT + 1))
    C_PID=$(start_cicada $CP); M_PID=$(start_mosquitto $MP); wait_port $CP; wait_port $MP
    C=$($BENCH --port $CP --broker-pid "$C_PID" --label cicada --seconds "$SECONDS_PER" $scenario || echo "cicada failed")
    M=$($BENCH --port $MP --broker-pid "$M_PID" --label mosquitto --seconds "$SECONDS_PER" $scenario || echo "mosquitto failed")
    kill "$C_PID" "$M_PID" 2>/dev/null; wait "$C_PID" "$M_PID" 2>/dev/null || true
    echo "$C"; echo "$M"
    c_rate=$(sed -n 's/.*delivered \([0-9]*\)\/s.*/\1/p' <<<"$C"); m_rate=$(sed -n 's/.*delivered \([0-9]*\)\/s.*/\1/p' <<<"$M")
    if [ "${m_rate:-0}" -gt 0 ]; then
        echo "  ratio delivered/s cicada:mosquitto = $(awk "BEGIN{printf \"%.2f\", $c_rate/$m_rate}")"
    fi
done
