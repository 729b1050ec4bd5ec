#!/usr/bin/env python3
"""Records conformance traces: real clients talking to Debian's mosquitto through cicada-record.

    conformance/record.sh                 # every scenario
    conformance/record.sh 'paho_v5_*'     # the scenarios matching a glob

Each scenario gets a fresh mosquitto (persistence off, so scenarios never see each other's state) with
the scenario's profile, a fresh recording proxy, and writes conformance/traces/NAME.trace. The scenario
definitions (which clients do what, the statements each covers, and where mosquitto deviates from the
specification, the output the specification requires) live in the scenarios_*.py modules.
"""

import fnmatch
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRACES = os.path.join(ROOT, "conformance", "traces")
sys.path.insert(0, HERE)

import scenario  # noqa: E402
import scenarios_paho  # noqa: E402,F401
import scenarios_raw  # noqa: E402,F401
import scenarios_tools  # noqa: E402,F401

# The broker settings of each profile; conformance/src/profile.rs configures the engine the same way.
PROFILES = {
    "default": [
        "max_inflight_messages 20",
        "max_topic_alias 10",
        "max_packet_size 1048576",
        "max_queued_messages 1000",
    ],
    "limits": [
        "max_inflight_messages 2",
        "max_topic_alias 2",
        "max_packet_size 256",
        "max_queued_messages 3",
        "max_keepalive 10",
    ],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listens on {port}")


def mosquitto_version():
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()[0]
    return first.replace("mosquitto version ", "mosquitto ")


def record(sc, recorder, broker_version):
    broker_port = free_port()
    proxy_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            f.write("log_dest none\n")
            f.write("\n".join(PROFILES[sc.profile]) + "\n")
        broker = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_port(broker_port)
            out = os.path.join(TRACES, sc.name + ".trace")
            args = [recorder, "--listen", f"127.0.0.1:{proxy_port}",
                    "--upstream", f"127.0.0.1:{broker_port}", "--out", out]
            for key, value in sc.header(broker_version):
                args += ["--header", f"{key}={value}"]
            proxy = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
            proxy.stdout.readline()  # "listening on ..."
            try:
                sc.run(proxy_port)
                time.sleep(sc.linger)
            finally:
                proxy.send_signal(signal.SIGTERM)
                proxy.wait(timeout=10)
        finally:
            broker.terminate()
            broker.wait(timeout=10)


def main(patterns):
    recorder = os.path.join(ROOT, "target", "debug", "cicada-record")
    version = mosquitto_version()
    os.makedirs(TRACES, exist_ok=True)
    chosen = [sc for sc in scenario.ALL
              if not patterns or any(fnmatch.fnmatch(sc.name, p) for p in patterns)]
    if not chosen:
        sys.exit(f"no scenario matches {patterns}")
    for i, sc in enumerate(chosen, 1):
        started = time.time()
        record(sc, recorder, version)
        print(f"[{i}/{len(chosen)}] {sc.name} ({time.time() - started:.1f}s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
