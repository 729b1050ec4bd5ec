"""End-to-end checks of the cicada broker with the Eclipse Paho Python client (paho-mqtt).

Usage: python3 paho_e2e.py PORT. Exits non-zero with a message on the first failure.
"""

import sys
import threading
import time

import paho.mqtt.client as mqtt

PORT = int(sys.argv[1])


def client(client_id, protocol, clean=True):
    kwargs = {"client_id": client_id, "protocol": protocol}
    if protocol != mqtt.MQTTv5:
        kwargs["clean_session"] = clean
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    return mqtt.Client(**kwargs)


class Inbox:
    def __init__(self):
        self.messages = []
        self.cond = threading.Condition()

    def on_message(self, _client, _userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload.decode(), msg.qos, msg.retain))
            self.cond.notify_all()

    def wait_for(self, count, timeout=5.0):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"expected {count} messages, got {self.messages}")
                self.cond.wait(left)
        return list(self.messages)


def connected(c, **kwargs):
    c.connect("127.0.0.1", PORT, keepalive=30, **kwargs)
    c.loop_start()
    return c


def pubsub(sub_protocol, pub_protocol, name):
    inbox = Inbox()
    sub = client(f"{name}-sub", sub_protocol)
    sub.on_message = inbox.on_message
    connected(sub)
    result, _ = sub.subscribe(f"{name}/#", qos=2)
    assert result == mqtt.MQTT_ERR_SUCCESS, result
    time.sleep(0.3)
    pub = connected(client(f"{name}-pub", pub_protocol))
    for qos in (0, 1, 2):
        info = pub.publish(f"{name}/q{qos}", f"m{qos}", qos=qos)
        info.wait_for_publish(5)
    got = inbox.wait_for(3)
    assert sorted(got) == [(f"{name}/q{q}", f"m{q}", q, False) for q in (0, 1, 2)], got
    # A retained message reaches a later subscriber with the retain flag.
    pub.publish(f"{name}/state", "on", qos=1, retain=True).wait_for_publish(5)
    late_inbox = Inbox()
    late = client(f"{name}-late", sub_protocol)
    late.on_message = late_inbox.on_message
    connected(late)
    late.subscribe(f"{name}/state", qos=1)
    got = late_inbox.wait_for(1)
    assert got == [(f"{name}/state", "on", 1, True)], got
    for c in (sub, pub, late):
        c.disconnect()
        c.loop_stop()


def will_on_lost_connection():
    inbox = Inbox()
    watcher = client("will-watcher", mqtt.MQTTv311)
    watcher.on_message = inbox.on_message
    connected(watcher)
    watcher.subscribe("wills/#", qos=1)
    time.sleep(0.3)
    doomed = client("doomed", mqtt.MQTTv5)
    doomed.will_set("wills/doomed", "gone", qos=1)
    connected(doomed)
    time.sleep(0.3)
    # Drop the TCP connection without DISCONNECT.
    doomed.loop_stop()
    doomed.socket().close()
    got = inbox.wait_for(1)
    assert got == [("wills/doomed", "gone", 1, False)], got
    watcher.disconnect()
    watcher.loop_stop()


pubsub(mqtt.MQTTv311, mqtt.MQTTv5, "p311")
pubsub(mqtt.MQTTv5, mqtt.MQTTv311, "p5")
will_on_lost_connection()
print("paho e2e ok")
