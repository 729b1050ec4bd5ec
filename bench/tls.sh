#!/usr/bin/env bash
# TLS against plain TCP, for cicada and Debian's mosquitto in the same run: handshake rate
# (connect + TLS + CONNECT/CONNACK + DISCONNECT) and QoS 0 throughput.
# Usage: bench/tls.sh [seconds per scenario]
# Certificates (a CA and a P-256 server certificate for localhost) are made with openssl in a
# temporary directory; nothing is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-5}

. bench/common.sh

DIR=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$DIR"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$DIR/ext"
openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 1 -extfile "$DIR/ext" -out "$DIR/server.pem" 2>/dev/null
# mosquitto started as root reads its files as the `mosquitto` user (throwaway keys, so readable).
chmod 755 "$DIR"; chmod 644 "$DIR"/*

start_cicada() { # TCP port, TLS port
    cat > "$DIR/cicada-$1.toml" <<TOML
[storage]
backend = "memory"
[sys]
interval_secs = 0
[[listener]]
kind = "tls"
bind = "127.0.0.1:$2"
[listener.tls]
cert = "$DIR/server.pem"
key = "$DIR/server.key"
TOML
    target/release/cicada --config "$DIR/cicada-$1.toml" --listen "127.0.0.1:$1" --log-level warn \
        --data-dir "$DIR/data-$1" >/dev/null 2>&1 &
    echo $!
}
start_mosquitto() { # TCP port, TLS port
        # set_tcp_nodelay: without it mosquitto's TLS handshakes wait on delayed ACKs (~90/s).
    printf 'set_tcp_nodelay true\nlistener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\nlistener %s 127.0.0.1\ncertfile %s\nkeyfile %s\n' \
        "$1" "$2" "$DIR/server.pem" "$DIR/server.key" > "$DIR/mosquitto-$1.conf"
    "$MOSQUITTO" -c "$DIR/mosquitto-$1.conf" >/dev/null 2>&1 & echo $!
}

SCENARIOS=(
    "--scenario handshakes --clients 4"
    "--scenario pairs --clients 10 --qos 0"
    "--scenario fan-out --clients 100 --qos 0 --rate 1000"
)

rate_of() { sed -n -e 's/.*delivered \([0-9]*\)\/s.*/\1/p' -e 's/.*: \([0-9]*\) connections\/s.*/\1/p' <<<"$1"; }

PORT=19830
for scenario in "${SCENARIOS[@]}"; do
    PORT=$((PORT + 4)); CT=$PORT; CS=$((PORT + 1)); MT=$((PORT + 2)); MS=$((PORT + 3))
    C_PID=$(start_cicada $CT $CS); M_PID=$(start_mosquitto $MT $MS); PIDS=("$C_PID" "$M_PID")
    wait_port $CT; wait_port $CS; wait_port $MT; wait_port $MS
    echo "== $scenario"
    for who in cicada mosquitto; do
        if [ $who = cicada ]; then pid=$C_PID; tcp=$CT; tls=$CS; else pid=$M_PID; tcp=$MT; tls=$MS; fi
        T=$($BENCH --url "mqtt://127.0.0.1:$tcp" --broker-pid "$pid" --label "$who-tcp" --seconds "$SECONDS_PER" $scenario || echo "$who tcp failed")
        S=$($BENCH --url "mqtts://localhost:$tls" --cafile "$DIR/ca.pem" --broker-pid "$pid" --label "$who-tls" --seconds "$SECONDS_PER" $scenario || echo "$who tls failed")
        echo "$T"; echo "$S"
        t=$(rate_of "$T"); s=$(rate_of "$S")
        if [ "${t:-0}" -gt 0 ]; then echo "  $who tls:tcp = $(awk "BEGIN{printf \"%.2f\", ${s:-0}/$t}")"; fi
        eval "${who}_tls=${s:-0}"
    done
    if [ "${mosquitto_tls:-0}" -gt 0 ]; then
        echo "  tls cicada:mosquitto = $(awk "BEGIN{printf \"%.2f\", $cicada_tls/$mosquitto_tls}")"
    fi
    kill "$C_PID" "$M_PID" 2>/dev/null; wait "$C_PID" "$M_PID" 2>/dev/null || true
done
