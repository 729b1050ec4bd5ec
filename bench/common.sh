# Sourced by the bench scripts: builds the broker and the load tool, finds (or installs) Debian's
# mosquitto, and defines wait_port.
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y -q mosquitto >/dev/null; else sudo apt-get install -y -q mosquitto >/dev/null; fi
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
cargo build --release --locked -p cicada-shell-tokio -p cicada-bench
BENCH=target/release/cicada-bench

# Waits up to 20 s for something to listen on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 2000); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.01; done
    echo "nothing listens on port $1" >&2; return 1
}
