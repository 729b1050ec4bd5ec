#!/bin/sh
# Re-records conformance traces against Debian's mosquitto: every scenario, or those matching the
# globs given (e.g. conformance/record.sh 'raw_v5_*'). Needs the mosquitto, mosquitto-clients and
# python3-paho-mqtt (or pip paho-mqtt) packages.
set -eu
cd "$(dirname "$0")/.."
cargo build -q -p cicada-conformance --bin cicada-record --example rumqttc_client
exec python3 conformance/record/record.py "$@"
