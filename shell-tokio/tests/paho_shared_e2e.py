"""Shared subscriptions end to end with the Eclipse Paho Python client (paho-mqtt 2.x).

Usage: python3 paho_shared_e2e.py PORT. Exits non-zero with a message on the first failure.
Three members of $share/workers/jobs/# (two v5, one 3.1.1) share 30 QoS 1 messages: each gets some,
together exactly all, none twice. Then one member leaves and the other two get everything after.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt

PORT = int(sys.argv[1])
FILTER = "$share/workers/jobs/#"


class Member:
    def __init__(self, name, protocol):
        kwargs = {"client_id": name, "protocol": protocol}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.got = []
        self.lock = threading.Lock()
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", PORT, keepalive=30)
        self.client.loop_start()
        _, mid = self.client.subscribe(FILTER, qos=1)
        self.subscribed = mid

    def on_message(self, _client, _userdata, msg):
        with self.lock:
            self.got.append(msg.payload.decode())

    def received(self):
        with self.lock:
            return list(self.got)

    def leave(self):
        self.client.disconnect()
        self.client.loop_stop()


def wait_total(members, count, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sum(len(m.received()) for m in members) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {count} messages, got {[m.received() for m in members]}")


members = [
    Member("w1", mqtt.MQTTv5),
    Member("w2", mqtt.MQTTv5),
    Member("w3", mqtt.MQTTv311),
]
time.sleep(0.5)
pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="boss", protocol=mqtt.MQTTv5)
pub.connect("127.0.0.1", PORT, keepalive=30)
pub.loop_start()
for i in range(30):
    pub.publish(f"jobs/{i % 3}", f"job-{i}", qos=1).wait_for_publish(5)
wait_total(members, 30)
time.sleep(0.3)
seen = [p for m in members for p in m.received()]
assert sorted(seen) == sorted(f"job-{i}" for i in range(30)), seen
assert all(len(m.received()) > 0 for m in members), [m.received() for m in members]
counts = [len(m.received()) for m in members]
assert max(counts) - min(counts) <= 1, f"round robin spreads evenly: {counts}"

# One member leaves: the others take everything after.
members[0].leave()
time.sleep(0.3)
before = [len(m.received()) for m in members[1:]]
for i in range(30, 40):
    pub.publish("jobs/x", f"job-{i}", qos=1).wait_for_publish(5)
wait_total(members[1:], sum(before) + 10)
time.sleep(0.3)
later = [
    p for m in members[1:] for p in m.received() if int(p.split("-")[1]) >= 30
]
assert sorted(later) == sorted(f"job-{i}" for i in range(30, 40)), later
for m in members[1:]:
    m.leave()
pub.disconnect()
pub.loop_stop()
print("paho shared e2e ok")
