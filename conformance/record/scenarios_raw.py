"""Scenarios from a raw socket client: exact bytes, malformed input, limits, keep alive, sessions."""

import time

from scenario import add
from wire import (V31, V311, V5, Raw, ack, auth, connect, disconnect, packet, props, publish,
                  subscribe, unsubscribe, u8, u16, u32, s, user, varint, PINGREQ,
                  PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION,
                  SUB_ID, SESSION_EXPIRY, AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM, WILL_DELAY,
                  REQUEST_RESPONSE, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS,
                  MAXIMUM_PACKET_SIZE)

CLIENT = "raw socket (conformance/record/wire.py)"


def conn(port, cid, v=V311, **kw):
    return Raw(port).send(connect(cid, version=v, **kw))


def raw(name, fn, **kw):
    add(name, fn, CLIENT, **kw)


# ---------------------------------------------------------------- connection and session

for v, tag in ((V31, "v31"), (V311, "v311"), (V5, "v5")):
    def clean(port, v=v):
        c = conn(port, "clean-" + str(v), v=v)
        c.send(PINGREQ)
        c.send(disconnect(v == V5))
        c.close()
    raw(f"raw_{tag}_connect_ping_disconnect", clean,
        covers311="MQTT-3.1.0-1 MQTT-3.2.0-1 MQTT-3.12.4-1" if v == V311 else "",
        covers5="MQTT-3.1.0-1 MQTT-3.2.0-1 MQTT-3.12.4-1" if v == V5 else "")

    def second_connect(port, v=v):
        c = conn(port, "twice", v=v)
        c.send(connect("twice", version=v), wait=0.2)
        c.close()
    raw(f"raw_{tag}_second_connect", second_connect,
        covers311="MQTT-3.1.0-2" if v == V311 else "", covers5="MQTT-3.1.0-2" if v == V5 else "")

    def publish_first(port, v=v):
        c = Raw(port)
        c.send(publish("a", "x"), wait=0.2)
        c.close()
    raw(f"raw_{tag}_publish_before_connect", publish_first,
        covers311="MQTT-3.1.0-1" if v == V311 else "", covers5="MQTT-3.1.0-1" if v == V5 else "")

    def takeover(port, v=v):
        a = conn(port, "same", v=v)
        b = conn(port, "same", v=v)
        a.read(0.1)
        b.send(PINGREQ)
        b.send(disconnect(v == V5))
        a.close()
        b.close()
    raw(f"raw_{tag}_takeover", takeover,
        covers311="MQTT-3.1.4-2" if v == V311 else "", covers5="MQTT-3.1.4-3" if v == V5 else "")

    def keepalive_timeout(port, v=v):
        c = conn(port, "idle", v=v, keep_alive=1)
        c.read(4.5)
        c.close()
    raw(f"raw_{tag}_keepalive_timeout", keepalive_timeout,
        covers311="MQTT-3.1.2-24" if v == V311 else "", covers5="MQTT-3.1.2-22" if v == V5 else "")

    def keepalive_pings(port, v=v):
        c = conn(port, "pinger", v=v, keep_alive=1)
        for _ in range(4):
            c.send(PINGREQ, wait=0.7)
        c.send(disconnect(v == V5))
        c.close()
    raw(f"raw_{tag}_keepalive_pings", keepalive_pings,
        covers311="MQTT-3.12.4-1" if v == V311 else "", covers5="MQTT-3.12.4-1" if v == V5 else "")


def zero_keepalive(port):
    c = conn(port, "forever", keep_alive=0)
    c.read(2.0)
    c.send(PINGREQ)
    c.close()


raw("raw_v311_zero_keepalive", zero_keepalive)


# CONNECTs the broker must refuse: (scenario, bytes, 3.1.1 ids, 5.0 ids). The client sends one and waits.
BAD_CONNECTS = [
    ("raw_unknown_protocol_level", connect("lvl", version=6), "MQTT-3.1.2-2", "MQTT-3.1.2-2"),
    ("raw_v311_bad_protocol_name", connect("nm", name="MQTX"), "MQTT-3.1.2-1", ""),
    ("raw_v311_connect_reserved_flag", connect("rsv", flags_extra=0x01), "MQTT-3.1.2-3", ""),
    ("raw_v5_connect_reserved_flag", connect("rsv", version=V5, flags_extra=0x01), "", "MQTT-3.1.2-3"),
    ("raw_v311_will_qos_3", connect("wq", will=("w", "x", 3, False)), "MQTT-3.1.2-14", ""),
    ("raw_v311_will_retain_without_will", connect("wr", flags_extra=0x20), "MQTT-3.1.2-15", ""),
    ("raw_v311_will_qos_without_will", connect("wq0", flags_extra=0x08), "MQTT-3.1.2-13", ""),
    ("raw_v311_password_without_username", connect("pw", password="secret"), "MQTT-3.1.2-22", ""),
    ("raw_v311_client_id_invalid_utf8",
     packet(0x10, s("MQTT") + bytes([4, 2]) + u16(60) + u16(2) + b"\xc3\x28"),
     "MQTT-1.5.3-1 MQTT-3.1.3-4", ""),
    ("raw_v5_unknown_authentication_method",
     connect("authy", version=V5, properties=props((AUTH_METHOD, s("X-UNKNOWN")), (AUTH_DATA, u16(2) + b"hi"))),
     "", "MQTT-4.12.0-1"),
]
for name, data, ids311, ids5 in BAD_CONNECTS:
    raw(name, lambda port, d=data: Raw(port).send(d, wait=0.2).close(), covers311=ids311, covers5=ids5)


def empty_id_clean(port):
    c = conn(port, "")
    c.send(disconnect())
    c.close()


raw("raw_v311_empty_client_id_clean", empty_id_clean, covers311="MQTT-3.1.3-6")


def empty_id_persistent(port):
    c = conn(port, "", clean=False)
    c.read(0.2)
    c.close()


raw("raw_v311_empty_client_id_persistent", empty_id_persistent, covers311="MQTT-3.1.3-8 MQTT-3.2.2-4")


def empty_id_v5(port):
    c = conn(port, "", v=V5)
    c.send(disconnect(True))
    c.close()


raw("raw_v5_empty_client_id_assigned", empty_id_v5, covers5="MQTT-3.1.3-6 MQTT-3.1.3-7 MQTT-3.2.2-16")


def username_password(port):
    c = conn(port, "creds", username="alice", password="secret")
    c.send(disconnect())
    c.close()


raw("raw_v311_username_password", username_password, covers311="MQTT-3.1.2-19 MQTT-3.1.2-21")


def long_client_id(port):
    c = conn(port, "x" * 100)
    c.send(disconnect())
    c.close()


raw("raw_v311_long_client_id", long_client_id, covers311="MQTT-3.1.3-5")


def session_present(port, v=V311):
    v5 = v == V5
    extra = {"properties": props((SESSION_EXPIRY, u32(60)))} if v5 else {}
    c = conn(port, "keeper", v=v, clean=False, **extra)
    c.send(subscribe(1, [("s/t", 1)], v5=v5))
    c.send(disconnect(v5))
    c.close()
    c = conn(port, "keeper", v=v, clean=False, **extra)
    c.send(disconnect(v5))
    c.close()
    c = conn(port, "keeper", v=v, clean=True)
    c.send(disconnect(v5))
    c.close()


raw("raw_v311_session_present", session_present,
    covers311="MQTT-3.2.2-1 MQTT-3.2.2-2 MQTT-3.2.2-3 MQTT-3.1.2-4 MQTT-3.1.2-6")
raw("raw_v5_session_present", lambda port: session_present(port, V5),
    covers5="MQTT-3.2.2-2 MQTT-3.2.2-3 MQTT-3.1.2-4 MQTT-3.1.2-5 MQTT-3.1.2-6")


def session_expiry(port):
    c = conn(port, "expiring", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(1))))
    c.send(subscribe(1, [("e/t", 1)], v5=True))
    c.send(disconnect(True))
    c.close()
    time.sleep(2.2)
    c = conn(port, "expiring", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(1))))
    c.send(disconnect(True))
    c.close()


raw("raw_v5_session_expiry", session_expiry, covers5="MQTT-4.1.0-2 MQTT-3.1.2-23")


def session_expiry_zero_disconnect_update(port):
    c = conn(port, "noexp", v=V5)
    c.send(disconnect(True, 0, props((SESSION_EXPIRY, u32(30)))), wait=0.2)
    c.close()


raw("raw_v5_disconnect_session_expiry_after_zero", session_expiry_zero_disconnect_update)


# ---------------------------------------------------------------- QoS flows


def qos_roundtrip(port, v, qos):
    v5 = v == V5
    c = conn(port, f"q{qos}", v=v)
    c.send(subscribe(1, [("q/t", qos)], v5=v5))
    c.send(publish("q/t", f"hello {qos}", qos=qos, pid=10 if qos else None, v5=v5))
    if qos == 1:
        c.send(ack("puback", 1, v5))
    if qos == 2:
        c.send(ack("pubrel", 10, v5))
        c.send(ack("pubrec", 1, v5))
        c.send(ack("pubcomp", 1, v5))
    c.send(disconnect(v5))
    c.close()


for v, tag in ((V311, "v311"), (V5, "v5")):
    for qos in (0, 1, 2):
        ids = {0: "MQTT-4.3.1-1", 1: "MQTT-4.3.2-1 MQTT-4.3.2-2", 2: "MQTT-4.3.3-1 MQTT-4.3.3-2"}[qos]
        raw(f"raw_{tag}_qos{qos}_roundtrip", lambda port, v=v, q=qos: qos_roundtrip(port, v, q),
            covers311=ids if v == V311 else "", covers5=ids if v == V5 else "")


def downgrade(port, v, sub_qos, pub_qos):
    v5 = v == V5
    sub = conn(port, "sub", v=v)
    sub.send(subscribe(1, [("d/t", sub_qos)], v5=v5))
    pub = conn(port, "pub", v=v)
    pub.send(publish("d/t", "m", qos=pub_qos, pid=5 if pub_qos else None, v5=v5))
    if pub_qos == 2:
        pub.send(ack("pubrel", 5, v5))
    got = min(sub_qos, pub_qos)
    if got == 1:
        sub.send(ack("puback", 1, v5))
    if got == 2:
        sub.send(ack("pubrec", 1, v5))
        sub.send(ack("pubcomp", 1, v5))
    pub.send(disconnect(v5))
    sub.send(disconnect(v5))
    pub.close()
    sub.close()


for v, tag in ((V311, "v311"), (V5, "v5")):
    for sq in (0, 1, 2):
        for pq in (0, 1, 2):
            raw(f"raw_{tag}_sub{sq}_pub{pq}", lambda port, v=v, a=sq, b=pq: downgrade(port, v, a, b),
                covers311="MQTT-3.8.4-6" if v == V311 else "",
                covers5="MQTT-3.8.4-8 MQTT-3.3.4-1" if v == V5 else "")


def qos2_duplicate(port, v=V311):
    v5 = v == V5
    sub = conn(port, "sub", v=v)
    sub.send(subscribe(1, [("dup/t", 0)], v5=v5))
    pub = conn(port, "pub", v=v)
    pub.send(publish("dup/t", "once", qos=2, pid=7, v5=v5))
    pub.send(publish("dup/t", "once", qos=2, pid=7, dup=True, v5=v5))
    pub.send(ack("pubrel", 7, v5))
    pub.send(publish("dup/t", "again", qos=2, pid=7, v5=v5))
    pub.send(ack("pubrel", 7, v5))
    pub.close()
    sub.close()


raw("raw_v311_qos2_duplicate_publish", qos2_duplicate, covers311="MQTT-4.3.3-2")
raw("raw_v5_qos2_duplicate_publish", lambda port: qos2_duplicate(port, V5),
    covers5="MQTT-4.3.3-10 MQTT-4.3.3-12")


def qos1_duplicate(port):
    sub = conn(port, "sub")
    sub.send(subscribe(1, [("dup1/t", 0)]))
    pub = conn(port, "pub")
    pub.send(publish("dup1/t", "one", qos=1, pid=3))
    pub.send(publish("dup1/t", "one", qos=1, pid=3, dup=True))
    pub.close()
    sub.close()


raw("raw_v311_qos1_duplicate_publish", qos1_duplicate, covers311="MQTT-4.3.2-2")


def ordering(port, v=V311):
    v5 = v == V5
    sub = conn(port, "sub", v=v)
    sub.send(subscribe(1, [("o/t", 1)], v5=v5))
    pub = conn(port, "pub", v=v)
    for i in range(5):
        pub.send(publish("o/t", f"m{i}", qos=1, pid=i + 1, v5=v5), wait=0.02)
    for i in range(5):
        sub.send(ack("puback", i + 1, v5), wait=0.02)
    pub.close()
    sub.close()


raw("raw_v311_ordering", ordering, covers311="MQTT-4.6.0-6")
raw("raw_v5_ordering", lambda port: ordering(port, V5), covers5="MQTT-4.6.0-5 MQTT-4.6.0-6")


def overlapping(port, v=V311):
    v5 = v == V5
    c = conn(port, "overlap", v=v)
    c.send(subscribe(1, [("ov/#", 0), ("ov/+", 1)], v5=v5))
    c.send(publish("ov/x", "both", qos=1, pid=9, v5=v5))
    c.send(ack("puback", 1, v5))
    c.send(disconnect(v5))
    c.close()


OVERLAP_NOTE = ("mosquitto sends one copy per matching subscription; Cicada sends one copy at the "
                "highest granted QoS. Both are allowed: the Server MUST respect the maximum QoS of the "
                "matching subscriptions and MAY send further copies")
raw("raw_v311_overlapping_subscriptions", overlapping, covers311="MQTT-3.3.5-1",
    deviation=OVERLAP_NOTE,
    expect=["c1 < CONNACK session_present=0 0x00 Success",
            "c1 < SUBACK pid=1 [0x00, 0x01]",
            "c1 < PUBLISH q1 pid=1 \"ov/x\" payload=\"both\"",
            "c1 < PUBACK pid=9"])


def unsubscribe_flow(port, v=V311):
    v5 = v == V5
    c = conn(port, "unsub", v=v)
    c.send(subscribe(1, [("u/t", 0)], v5=v5))
    c.send(unsubscribe(2, ["u/t"], v5=v5))
    c.send(publish("u/t", "gone", v5=v5))
    c.send(unsubscribe(3, ["never/subscribed"], v5=v5))
    c.send(disconnect(v5))
    c.close()


raw("raw_v311_unsubscribe", unsubscribe_flow,
    covers311="MQTT-3.10.4-1 MQTT-3.10.4-2 MQTT-3.10.4-4 MQTT-3.10.4-5")
raw("raw_v5_unsubscribe", lambda port: unsubscribe_flow(port, V5),
    covers5="MQTT-3.10.4-1 MQTT-3.10.4-2 MQTT-3.10.4-4 MQTT-3.10.4-5 MQTT-3.11.3-1")


def subscribe_many(port, v=V311):
    v5 = v == V5
    c = conn(port, "many", v=v)
    c.send(subscribe(4, [("m/a", 0), ("m/b", 1), ("m/c", 2), ("m/+/d", 1), ("m/#", 0)], v5=v5))
    c.send(unsubscribe(5, ["m/a", "m/b", "m/x"], v5=v5))
    c.send(disconnect(v5))
    c.close()


raw("raw_v311_subscribe_many", subscribe_many,
    covers311="MQTT-3.8.4-1 MQTT-3.8.4-2 MQTT-3.8.4-4 MQTT-3.8.4-5 MQTT-3.9.3-1 MQTT-3.10.4-6")
raw("raw_v5_subscribe_many", lambda port: subscribe_many(port, V5),
    covers5="MQTT-3.8.4-1 MQTT-3.8.4-2 MQTT-3.8.4-5 MQTT-3.8.4-6 MQTT-3.9.3-1 MQTT-3.10.4-6")


def resubscribe(port, v=V311):
    v5 = v == V5
    c = conn(port, "resub", v=v)
    pub = conn(port, "pub", v=v)
    pub.send(publish("rs/t", "kept", retain=True, v5=v5))
    c.send(subscribe(1, [("rs/t", 0)], v5=v5))
    c.send(subscribe(2, [("rs/t", 1)], v5=v5))
    pub.send(publish("rs/t", "live", qos=1, pid=1, v5=v5))
    c.send(ack("puback", 1, v5))
    c.send(ack("puback", 2, v5))
    pub.send(publish("rs/t", b"", retain=True, v5=v5))
    c.send(disconnect(v5))
    c.close()
    pub.close()


raw("raw_v311_resubscribe_replaces", resubscribe, covers311="MQTT-3.8.4-3")
raw("raw_v5_resubscribe_replaces", lambda port: resubscribe(port, V5), covers5="MQTT-3.8.4-3 MQTT-3.8.4-4")


# ---------------------------------------------------------------- retained


def retained(port, v, steps):
    v5 = v == V5
    pub = conn(port, "pub", v=v)
    for topic, payload, qos in steps:
        pub.send(publish(topic, payload, qos=qos, pid=1 if qos else None, retain=True, v5=v5))
        if qos == 2:
            pub.send(ack("pubrel", 1, v5))
    sub = conn(port, "sub", v=v)
    sub.send(subscribe(1, [("r/#", 2)], v5=v5), wait=0.1)
    sub.send(disconnect(v5))
    pub.send(disconnect(v5))
    sub.close()
    pub.close()


RETAINED = {
    "basic": [("r/a", "kept", 0)],
    "replace": [("r/a", "first", 0), ("r/a", "second", 0)],
    "clear": [("r/a", "kept", 0), ("r/a", "", 0)],
    "qos1": [("r/a", "one", 1)],
    "qos2": [("r/a", "two", 2)],
    "many_topics": [("r/a", "A", 0), ("r/b", "B", 1), ("r/c/d", "CD", 0)],
    "clear_unknown": [("r/none", "", 0)],
}
for v, tag in ((V311, "v311"), (V5, "v5")):
    for key, steps in RETAINED.items():
        raw(f"raw_{tag}_retained_{key}", lambda port, v=v, st=steps: retained(port, v, st),
            covers311="MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-10 MQTT-3.3.1-11" if v == V311 else "",
            covers5="MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-7 MQTT-3.3.1-9" if v == V5 else "")


def retain_live(port, v=V311):
    v5 = v == V5
    sub = conn(port, "sub", v=v)
    sub.send(subscribe(1, [("rl/t", 0)], v5=v5))
    pub = conn(port, "pub", v=v)
    pub.send(publish("rl/t", "now", retain=True, v5=v5))
    pub.send(publish("rl/t", "plain", v5=v5))
    pub.send(publish("rl/t", b"", retain=True, v5=v5))
    pub.close()
    sub.close()


raw("raw_v311_retain_flag_on_live_delivery", retain_live, covers311="MQTT-3.3.1-9 MQTT-3.3.1-12")
raw("raw_v5_retain_flag_on_live_delivery", lambda port: retain_live(port, V5),
    covers5="MQTT-3.3.1-12 MQTT-3.3.1-8")


# ---------------------------------------------------------------- wills


def will_on(port, v, end, retain=False, will_qos=0):
    v5 = v == V5
    sub = conn(port, "watcher", v=v)
    sub.send(subscribe(1, [("will/#", 2)], v5=v5))
    ka = 1 if end == "keepalive" else 60
    c = conn(port, "dying", v=v, keep_alive=ka, will=("will/dying", "gone", will_qos, retain))
    if end == "drop":
        c.close()
    elif end == "disconnect":
        c.send(disconnect(v5))
        c.close()
    elif end == "keepalive":
        c.read(4.5)
        c.close()
    elif end == "malformed":
        c.send(bytes([0x30, 0x03, 0x00, 0x05, 0x61]), wait=0.2)
        c.close()
    elif end == "takeover":
        other = conn(port, "dying", v=v)
        other.send(disconnect(v5))
        other.close()
        c.close()
    sub.read(0.2)
    if will_qos == 1:
        sub.send(ack("puback", 1, v5))
    if will_qos == 2:
        sub.send(ack("pubrec", 1, v5))
        sub.send(ack("pubcomp", 1, v5))
    if retain:
        late = conn(port, "late", v=v)
        late.send(subscribe(1, [("will/#", 0)], v5=v5))
        late.send(disconnect(v5))
        late.close()
    sub.send(disconnect(v5))
    sub.close()


for v, tag in ((V311, "v311"), (V5, "v5")):
    for end in ("drop", "disconnect", "keepalive", "malformed", "takeover"):
        ids = {"drop": "MQTT-3.1.2-8", "disconnect": "MQTT-3.1.2-10" if v == V311 else "MQTT-3.14.4-3",
               "keepalive": "MQTT-3.1.2-8", "malformed": "MQTT-3.1.2-8", "takeover": "MQTT-3.1.2-8"}[end]
        raw(f"raw_{tag}_will_{end}", lambda port, v=v, e=end: will_on(port, v, e),
            covers311=ids if v == V311 else "", covers5=ids if v == V5 else "")
    raw(f"raw_{tag}_will_retained", lambda port, v=v: will_on(port, v, "drop", retain=True),
        covers311="MQTT-3.1.2-17" if v == V311 else "", covers5="MQTT-3.1.2-15" if v == V5 else "")
    raw(f"raw_{tag}_will_qos2", lambda port, v=v: will_on(port, v, "drop", will_qos=2),
        covers311="MQTT-3.1.2-16" if v == V311 else "", covers5="MQTT-3.1.2-14" if v == V5 else "")


def will_delay(port, reconnect):
    sub = conn(port, "watcher", v=V5)
    sub.send(subscribe(1, [("wd/#", 0)], v5=True))
    c = conn(port, "delayed", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(30))),
             will=("wd/delayed", "late", 0, False, props((WILL_DELAY, u32(1)))))
    c.close()
    if reconnect:
        time.sleep(0.3)
        c = conn(port, "delayed", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(30))))
        sub.read(1.5)
        c.send(disconnect(True))
        c.close()
    else:
        sub.read(1.8)
    sub.send(disconnect(True))
    sub.close()


raw("raw_v5_will_delay_elapses", lambda port: will_delay(port, False), covers5="MQTT-3.1.2-8")
raw("raw_v5_will_delay_reconnect", lambda port: will_delay(port, True), covers5="MQTT-3.1.3-9")


def will_disconnect_with_will(port):
    sub = conn(port, "watcher", v=V5)
    sub.send(subscribe(1, [("ww/#", 0)], v5=True))
    c = conn(port, "leaver", v=V5, will=("ww/leaver", "asked", 0, False))
    c.send(disconnect(True, 0x04))
    c.close()
    sub.read(0.2)
    sub.send(disconnect(True))
    sub.close()


raw("raw_v5_disconnect_with_will_message", will_disconnect_with_will)


# ---------------------------------------------------------------- persistent sessions


def offline_queue(port, v=V311):
    v5 = v == V5
    extra = {"properties": props((SESSION_EXPIRY, u32(60)))} if v5 else {}
    c = conn(port, "offline", v=v, clean=False, **extra)
    c.send(subscribe(1, [("off/t", 2)], v5=v5))
    c.send(disconnect(v5))
    c.close()
    pub = conn(port, "pub", v=v)
    pub.send(publish("off/t", "q0", v5=v5))
    pub.send(publish("off/t", "q1", qos=1, pid=1, v5=v5))
    pub.send(publish("off/t", "q2", qos=2, pid=2, v5=v5))
    pub.send(ack("pubrel", 2, v5))
    pub.send(disconnect(v5))
    pub.close()
    c = conn(port, "offline", v=v, clean=False, **extra)
    c.read(0.1)
    c.send(ack("puback", 1, v5))
    c.send(ack("pubrec", 2, v5))
    c.send(ack("pubcomp", 2, v5))
    c.send(disconnect(v5))
    c.close()


raw("raw_v311_offline_queue", offline_queue, covers311="MQTT-3.1.2-4 MQTT-4.4.0-1")
raw("raw_v5_offline_queue", lambda port: offline_queue(port, V5), covers5="MQTT-3.1.2-5 MQTT-4.5.0-1")


def inflight_redelivery(port, v=V311, qos=1):
    v5 = v == V5
    extra = {"properties": props((SESSION_EXPIRY, u32(60)))} if v5 else {}
    c = conn(port, "flaky", v=v, clean=False, **extra)
    c.send(subscribe(1, [("fl/t", qos)], v5=v5))
    pub = conn(port, "pub", v=v)
    pub.send(publish("fl/t", "unacked", qos=qos, pid=1, v5=v5))
    if qos == 2:
        pub.send(ack("pubrel", 1, v5))
        c.send(ack("pubrec", 1, v5))
    c.close()
    time.sleep(0.1)
    c = conn(port, "flaky", v=v, clean=False, **extra)
    c.read(0.1)
    if qos == 1:
        c.send(ack("puback", 1, v5))
    else:
        c.send(ack("pubcomp", 1, v5))
    c.send(disconnect(v5))
    c.close()
    pub.close()


raw("raw_v311_inflight_qos1_redelivered", inflight_redelivery, covers311="MQTT-4.4.0-1 MQTT-3.3.1-1")
raw("raw_v5_inflight_qos1_redelivered", lambda port: inflight_redelivery(port, V5),
    covers5="MQTT-4.4.0-1 MQTT-3.3.1-1")
raw("raw_v311_inflight_pubrel_resent", lambda port: inflight_redelivery(port, V311, 2),
    covers311="MQTT-4.4.0-1")
raw("raw_v5_inflight_pubrel_resent", lambda port: inflight_redelivery(port, V5, 2),
    covers5="MQTT-4.4.0-1 MQTT-4.3.3-6")


def clean_start_discards(port, v=V311):
    v5 = v == V5
    extra = {"properties": props((SESSION_EXPIRY, u32(60)))} if v5 else {}
    c = conn(port, "fresh", v=v, clean=False, **extra)
    c.send(subscribe(1, [("cs/t", 1)], v5=v5))
    c.send(disconnect(v5))
    c.close()
    c = conn(port, "fresh", v=v, clean=True)
    pub = conn(port, "pub", v=v)
    pub.send(publish("cs/t", "nobody", qos=1, pid=1, v5=v5))
    c.read(0.1)
    c.send(disconnect(v5))
    c.close()
    pub.close()


raw("raw_v311_clean_session_discards", clean_start_discards, covers311="MQTT-3.1.2-6")
raw("raw_v5_clean_start_discards", lambda port: clean_start_discards(port, V5), covers5="MQTT-3.1.2-4")


# ---------------------------------------------------------------- topics and wildcards


def dollar_topics(port, v=V311):
    v5 = v == V5
    c = conn(port, "dollar", v=v)
    c.send(subscribe(1, [("#", 0), ("+/x", 0), ("$app/#", 0)], v5=v5))
    pub = conn(port, "pub", v=v)
    pub.send(publish("$app/x", "hidden", v5=v5))
    pub.send(publish("app/x", "seen", v5=v5))
    pub.close()
    c.read(0.1)
    c.close()


raw("raw_v311_dollar_topics", dollar_topics, covers311="MQTT-4.7.2-1")
raw("raw_v5_dollar_topics", lambda port: dollar_topics(port, V5), covers5="MQTT-4.7.2-1")


def wildcards(port, v=V311):
    v5 = v == V5
    c = conn(port, "wild", v=v)
    c.send(subscribe(1, [("w/+/c", 0), ("w/a/#", 0), ("+", 0), ("w/+", 0)], v5=v5))
    pub = conn(port, "pub", v=v)
    for t in ("w/b/c", "w/a", "w/a/b/c", "top", "w//c", "w/b"):
        pub.send(publish(t, t, v5=v5), wait=0.02)
    pub.close()
    c.read(0.1)
    c.close()


raw("raw_v311_wildcards", wildcards, covers311="MQTT-4.7.1-2 MQTT-4.7.1-3 MQTT-4.7.3-4")
raw("raw_v5_wildcards", lambda port: wildcards(port, V5), covers5="MQTT-4.7.1-2 MQTT-4.7.3-4 MQTT-3.3.2-3")


# ---------------------------------------------------------------- malformed input and protocol errors

MALFORMED = {
    # name: (bytes after CONNECT, 3.1.1 ids, 5.0 ids)
    "publish_qos3": (publish("a", "x", qos=3, pid=1), "MQTT-3.3.1-4", "MQTT-3.3.1-4"),
    "publish_wildcard_topic": (publish("a/+", "x"), "MQTT-3.3.2-2", "MQTT-3.3.2-2"),
    "publish_empty_topic": (publish("", "x"), "MQTT-4.7.3-1", ""),
    "publish_invalid_utf8": (packet(0x30, u16(2) + b"\xc3\x28" + b"x"), "MQTT-1.5.3-1", "MQTT-1.5.4-1"),
    "publish_null_char": (packet(0x30, u16(3) + b"a\x00b" + b"x"), "MQTT-1.5.3-2", "MQTT-1.5.4-2"),
    "publish_qos0_dup": (bytes([0x38, 0x04]) + u16(1) + b"ax", "", "MQTT-3.3.1-2"),
    "publish_qos1_zero_pid": (packet(0x32, s("a") + u16(0) + b"x"), "MQTT-2.3.1-1", ""),
    "subscribe_bad_flags": (subscribe(1, [("a", 0)], first=0x80), "MQTT-3.8.1-1", "MQTT-3.8.1-1"),
    "unsubscribe_bad_flags": (unsubscribe(1, ["a"], first=0xA0), "MQTT-3.10.1-1", "MQTT-3.10.1-1"),
    "pubrel_bad_flags": (packet(0x60, u16(1)), "MQTT-3.6.1-1", "MQTT-3.6.1-1"),
    "subscribe_no_filters": (packet(0x82, u16(1)), "MQTT-3.8.3-3", "MQTT-3.8.3-2"),
    "unsubscribe_no_filters": (packet(0xA2, u16(1)), "MQTT-3.10.3-2", "MQTT-3.10.3-2"),
    "subscribe_qos3": (subscribe(1, [("a", 3)]), "MQTT-3.8.3-4", ""),
    "subscribe_reserved_option_bits": (subscribe(1, [("a", 0x40)]), "MQTT-3.8.3-4", "MQTT-3.8.3-5"),
    "subscribe_bad_multilevel": (subscribe(1, [("a/#/b", 0)]), "MQTT-4.7.1-2", "MQTT-4.7.1-1"),
    "subscribe_bad_single_level": (subscribe(1, [("a/b+", 0)]), "MQTT-4.7.1-3", "MQTT-4.7.1-2"),
    "subscribe_empty_filter": (subscribe(1, [("", 0)]), "MQTT-4.7.3-1", "MQTT-4.7.3-1"),
    "remaining_length_too_long": (bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), "", ""),
    "reserved_packet_type_0": (bytes([0x00, 0x00]), "", ""),
    "client_sends_connack": (bytes([0x20, 0x02, 0x00, 0x00]), "", ""),
    "client_sends_suback": (bytes([0x90, 0x03, 0x00, 0x01, 0x00]), "", ""),
    "pingreq_with_body": (bytes([0xC0, 0x01, 0x00]), "", ""),
    "disconnect_bad_flags": (bytes([0xE1, 0x00]), "MQTT-3.14.1-1", ""),
    "truncated_publish_then_close": (bytes([0x30, 0x0A, 0x00, 0x03]), "", ""),
}


def malformed(port, v, data):
    v5 = v == V5
    sub = conn(port, "bystander", v=v)
    sub.send(subscribe(1, [("#", 0)], v5=v5))
    c = conn(port, "broken", v=v)
    c.send(data, wait=0.25)
    c.close()
    sub.send(PINGREQ)
    sub.send(disconnect(v5))
    sub.close()


for key, (data, ids311, ids5) in MALFORMED.items():
    raw(f"raw_v311_malformed_{key}", lambda port, d=data: malformed(port, V311, d), covers311=ids311)

V5_MALFORMED = {k: MALFORMED[k] for k in (
    "publish_qos3", "publish_wildcard_topic", "publish_invalid_utf8", "publish_null_char",
    "publish_qos0_dup", "subscribe_bad_flags", "pubrel_bad_flags", "subscribe_no_filters",
    "unsubscribe_no_filters", "subscribe_reserved_option_bits", "subscribe_bad_multilevel",
    "remaining_length_too_long", "reserved_packet_type_0")}
V5_MALFORMED.update({
    "duplicate_property": (publish("a", "x", v5=True, properties=props((PAYLOAD_FORMAT, u8(0)),
                                                                      (PAYLOAD_FORMAT, u8(0)))),
                           "", ""),
    "unknown_property": (publish("a", "x", v5=True, properties=props((0x7F, u8(0)))), "", ""),
    "property_length_overrun": (packet(0x30, s("a") + varint(9) + b"\x01\x00"), "", ""),
    "non_minimal_varint": (bytes([0x30, 0x84, 0x00]) + s("a") + b"\x00" + b"x", "", "MQTT-1.5.5-1"),
    "topic_alias_zero": (publish("a", "x", v5=True, properties=props((TOPIC_ALIAS, u16(0)))),
                         "", "MQTT-3.3.2-8"),
    "topic_alias_too_big": (publish("a", "x", v5=True, properties=props((TOPIC_ALIAS, u16(11)))),
                            "", "MQTT-3.3.2-12"),
    "topic_alias_unknown": (publish("", "x", v5=True, properties=props((TOPIC_ALIAS, u16(3)))),
                            "", ""),
    "publish_subscription_identifier": (publish("a", "x", v5=True, properties=props((SUB_ID, varint(4)))),
                                        "", "MQTT-3.3.4-6"),
    "subscription_identifier_zero": (subscribe(1, [("a", 0)], v5=True, properties=props((SUB_ID, varint(0)))),
                                     "", ""),
    "response_topic_wildcard": (publish("a", "x", v5=True, properties=props((RESPONSE_TOPIC, s("r/#")))),
                                "", "MQTT-3.3.2-14"),
    "auth_without_method": (auth(0x19, props()), "", "MQTT-4.12.0-7"),
    "shared_no_local": (subscribe(1, [("$share/g/a", 0x04)], v5=True), "", "MQTT-3.8.3-4"),
    "payload_format_invalid_utf8": (publish("a", b"\xff\xfe", qos=1, pid=1, v5=True,
                                            properties=props((PAYLOAD_FORMAT, u8(1)))), "", ""),
    "pubrel_unknown_pid": (ack("pubrel", 42, True), "", ""),
    "puback_unknown_pid": (ack("puback", 42, True), "", ""),
    "disconnect_bad_reason": (packet(0xE0, bytes([0x03]) + props()), "", "MQTT-3.14.2-1"),
})
for key, (data, ids311, ids5) in V5_MALFORMED.items():
    raw(f"raw_v5_malformed_{key}", lambda port, d=data: malformed(port, V5, d), covers5=ids5)


# ---------------------------------------------------------------- MQTT 5 features


def topic_alias_inbound(port):
    sub = conn(port, "sub", v=V5)
    sub.send(subscribe(1, [("alias/#", 0)], v5=True))
    c = conn(port, "aliaser", v=V5)
    c.send(publish("alias/one", "1", v5=True, properties=props((TOPIC_ALIAS, u16(1)))))
    c.send(publish("", "2", v5=True, properties=props((TOPIC_ALIAS, u16(1)))))
    c.send(publish("alias/two", "3", v5=True, properties=props((TOPIC_ALIAS, u16(1)))))
    c.send(publish("", "4", v5=True, properties=props((TOPIC_ALIAS, u16(1)))))
    c.send(disconnect(True))
    c.close()
    sub.send(disconnect(True))
    sub.close()


raw("raw_v5_topic_alias_inbound", topic_alias_inbound, covers5="MQTT-3.3.2-12 MQTT-3.3.2-7")


def alias_across_connections(port):
    c = conn(port, "aliaser", v=V5)
    c.send(publish("alias/one", "1", v5=True, properties=props((TOPIC_ALIAS, u16(1)))))
    c.send(disconnect(True))
    c.close()
    c = conn(port, "aliaser", v=V5)
    c.send(publish("", "2", v5=True, properties=props((TOPIC_ALIAS, u16(1)))), wait=0.2)
    c.close()


raw("raw_v5_topic_alias_not_carried_over", alias_across_connections, covers5="MQTT-3.3.2-7")


def forwarded_properties(port):
    sub = conn(port, "sub", v=V5)
    sub.send(subscribe(1, [("p/#", 1)], v5=True))
    pub = conn(port, "pub", v=V5)
    p = props((PAYLOAD_FORMAT, u8(1)), (CONTENT_TYPE, s("text/plain")),
              (RESPONSE_TOPIC, s("reply/here")), (CORRELATION, b"\x00\x03abc"),
              user("z", "1"), user("a", "2"), user("z", "3"))
    pub.send(publish("p/t", "props", qos=1, pid=1, v5=True, properties=p))
    sub.send(ack("puback", 1, True))
    pub.send(disconnect(True))
    sub.send(disconnect(True))
    pub.close()
    sub.close()


raw("raw_v5_properties_forwarded", forwarded_properties,
    covers5="MQTT-3.3.2-4 MQTT-3.3.2-15 MQTT-3.3.2-16 MQTT-3.3.2-17 MQTT-3.3.2-18 MQTT-3.3.2-20")


def message_expiry(port):
    pub = conn(port, "pub", v=V5)
    pub.send(publish("x/kept", "short", retain=True, v5=True, properties=props((MESSAGE_EXPIRY, u32(1)))))
    pub.send(publish("x/long", "long", retain=True, v5=True, properties=props((MESSAGE_EXPIRY, u32(100)))))
    time.sleep(2.0)
    sub = conn(port, "sub", v=V5)
    sub.send(subscribe(1, [("x/#", 0)], v5=True), wait=0.1)
    sub.send(disconnect(True))
    pub.send(publish("x/kept", b"", retain=True, v5=True))
    pub.send(publish("x/long", b"", retain=True, v5=True))
    pub.send(disconnect(True))
    sub.close()
    pub.close()


raw("raw_v5_message_expiry_retained", message_expiry, covers5="MQTT-3.3.2-5 MQTT-3.3.2-6")


def message_expiry_queued(port):
    c = conn(port, "later", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(60))))
    c.send(subscribe(1, [("mq/#", 1)], v5=True))
    c.send(disconnect(True))
    c.close()
    pub = conn(port, "pub", v=V5)
    pub.send(publish("mq/gone", "1s", qos=1, pid=1, v5=True, properties=props((MESSAGE_EXPIRY, u32(1)))))
    pub.send(publish("mq/kept", "60s", qos=1, pid=2, v5=True, properties=props((MESSAGE_EXPIRY, u32(60)))))
    pub.send(disconnect(True))
    pub.close()
    time.sleep(2.1)
    c = conn(port, "later", v=V5, clean=False, properties=props((SESSION_EXPIRY, u32(60))))
    c.send(ack("puback", 1, True))
    c.send(disconnect(True))
    c.close()


raw("raw_v5_message_expiry_queued", message_expiry_queued, covers5="MQTT-3.3.2-5 MQTT-3.3.2-6")


def subscription_ids(port):
    c = conn(port, "ids", v=V5)
    c.send(subscribe(1, [("sid/a", 0)], v5=True, properties=props((SUB_ID, varint(5)))))
    c.send(subscribe(2, [("sid/b", 0)], v5=True, properties=props((SUB_ID, varint(300)))))
    c.send(subscribe(3, [("sid/c", 0)], v5=True))
    for t in ("sid/a", "sid/b", "sid/c"):
        c.send(publish(t, t, v5=True), wait=0.02)
    c.send(disconnect(True))
    c.close()


raw("raw_v5_subscription_identifiers", subscription_ids, covers5="MQTT-3.3.4-3 MQTT-3.3.4-5")


def no_local(port):
    c = conn(port, "self", v=V5)
    c.send(subscribe(1, [("nl/t", 0x04)], v5=True))
    other = conn(port, "other", v=V5)
    other.send(subscribe(1, [("nl/t", 0x04)], v5=True))
    c.send(publish("nl/t", "mine", v5=True))
    other.send(publish("nl/t", "theirs", v5=True))
    c.send(disconnect(True))
    other.send(disconnect(True))
    c.close()
    other.close()


raw("raw_v5_no_local", no_local, covers5="MQTT-3.8.3-3")


def retain_as_published(port):
    c = conn(port, "rap", v=V5)
    c.send(subscribe(1, [("rap/keep", 0x08), ("rap/clear", 0x00)], v5=True))
    pub = conn(port, "pub", v=V5)
    pub.send(publish("rap/keep", "k", retain=True, v5=True))
    pub.send(publish("rap/clear", "c", retain=True, v5=True))
    pub.send(publish("rap/keep", b"", retain=True, v5=True))
    pub.send(publish("rap/clear", b"", retain=True, v5=True))
    pub.close()
    c.read(0.1)
    c.close()


raw("raw_v5_retain_as_published", retain_as_published, covers5="MQTT-3.3.1-12 MQTT-3.3.1-13")


def retain_handling(port, rh):
    pub = conn(port, "pub", v=V5)
    pub.send(publish("rh/t", "stored", retain=True, v5=True))
    c = conn(port, "rh", v=V5)
    c.send(subscribe(1, [("rh/t", rh << 4)], v5=True))
    c.send(subscribe(2, [("rh/t", rh << 4)], v5=True))
    pub.send(publish("rh/t", b"", retain=True, v5=True))
    c.send(disconnect(True))
    c.close()
    pub.close()


for rh in (0, 1, 2):
    raw(f"raw_v5_retain_handling_{rh}", lambda port, rh=rh: retain_handling(port, rh),
        covers5={0: "MQTT-3.3.1-9", 1: "MQTT-3.3.1-10", 2: "MQTT-3.3.1-11"}[rh])


def shared_single(port):
    a = conn(port, "member", v=V5)
    a.send(subscribe(1, [("$share/g/sh/t", 1)], v5=True))
    pub = conn(port, "pub", v=V5)
    pub.send(publish("sh/t", "to the group", qos=1, pid=1, v5=True))
    a.send(ack("puback", 1, True))
    a.send(unsubscribe(2, ["$share/g/sh/t"], v5=True))
    a.send(disconnect(True))
    a.close()
    pub.close()


raw("raw_v5_shared_subscription", shared_single, covers5="MQTT-4.8.2-1 MQTT-4.8.2-3")


def shared_invalid(port):
    c = conn(port, "badshare", v=V5)
    c.send(subscribe(1, [("$share/g+/t", 0)], v5=True), wait=0.2)
    c.close()


raw("raw_v5_shared_invalid_name", shared_invalid, covers5="MQTT-4.8.2-2")


def unsubscribe_reasons(port):
    c = conn(port, "unsub", v=V5)
    c.send(subscribe(1, [("ur/a", 0)], v5=True))
    c.send(unsubscribe(2, ["ur/a", "ur/b"], v5=True))
    c.send(disconnect(True))
    c.close()


raw("raw_v5_unsubscribe_reason_codes", unsubscribe_reasons, covers5="MQTT-3.11.3-1 MQTT-3.11.3-2")


def client_receive_maximum(port):
    c = conn(port, "slow", v=V5, properties=props((RECEIVE_MAXIMUM, u16(1))))
    c.send(subscribe(1, [("rm/t", 1)], v5=True))
    pub = conn(port, "pub", v=V5)
    for i in range(3):
        pub.send(publish("rm/t", f"m{i}", qos=1, pid=i + 1, v5=True), wait=0.02)
    c.read(0.2)
    for i in range(3):
        c.send(ack("puback", i + 1, True), wait=0.1)
    c.send(disconnect(True))
    c.close()
    pub.close()


raw("raw_v5_client_receive_maximum", client_receive_maximum, covers5="MQTT-3.3.4-9 MQTT-4.9.0-2")


def client_max_packet_size(port):
    c = conn(port, "small", v=V5, properties=props((MAXIMUM_PACKET_SIZE, u32(40))))
    c.send(subscribe(1, [("mp/#", 0)], v5=True))
    pub = conn(port, "pub", v=V5)
    pub.send(publish("mp/big", "x" * 100, v5=True))
    pub.send(publish("mp/small", "ok", v5=True))
    c.read(0.1)
    c.send(disconnect(True))
    c.close()
    pub.close()


raw("raw_v5_client_maximum_packet_size", client_max_packet_size, covers5="MQTT-3.1.2-24 MQTT-3.1.2-25")


def connect_properties(port):
    p = props((SESSION_EXPIRY, u32(10)), (RECEIVE_MAXIMUM, u16(5)), (MAXIMUM_PACKET_SIZE, u32(4096)),
              (TOPIC_ALIAS_MAXIMUM, u16(0)), (REQUEST_PROBLEM, u8(1)), user("k", "v"))
    c = conn(port, "props", v=V5, properties=p)
    c.send(disconnect(True, 0, props((SESSION_EXPIRY, u32(0)))))
    c.close()


raw("raw_v5_connect_properties", connect_properties, covers5="MQTT-3.2.2-1 MQTT-3.2.2-8")


def request_response_info(port):
    c = conn(port, "asker", v=V5, properties=props((REQUEST_RESPONSE, u8(1))))
    c.send(disconnect(True))
    c.close()


raw("raw_v5_request_response_information", request_response_info)


def pubrec_error(port):
    c = conn(port, "refuser", v=V5)
    c.send(subscribe(1, [("pe/t", 2)], v5=True))
    pub = conn(port, "pub", v=V5)
    pub.send(publish("pe/t", "refused", qos=2, pid=1, v5=True))
    pub.send(ack("pubrel", 1, True))
    c.send(ack("pubrec", 1, True, reason=0x80), wait=0.1)
    pub.send(publish("pe/t", "accepted", qos=1, pid=2, v5=True))
    c.send(ack("puback", 2, True, reason=0x80))
    c.send(disconnect(True))
    c.close()
    pub.close()


raw("raw_v5_subscriber_refuses", pubrec_error, covers5="MQTT-4.4.0-2 MQTT-4.3.3-4")


def puback_with_reason_string(port):
    c = conn(port, "chatty", v=V5)
    c.send(subscribe(1, [("rs/t", 1)], v5=True))
    c.send(publish("rs/t", "x", qos=1, pid=7, v5=True))
    c.send(ack("puback", 1, True, reason=0x10, properties=props((0x1F, s("no matching subscribers")))))
    c.send(disconnect(True))
    c.close()


raw("raw_v5_client_ack_with_properties", puback_with_reason_string)


def receive_maximum_exceeded(port):
    c = conn(port, "greedy", v=V5)
    for i in range(3):
        c.send(publish("rx/t", f"m{i}", qos=2, pid=i + 1, v5=True), wait=0.05)
    c.read(0.2)
    c.close()


raw("raw_v5_receive_maximum_exceeded", receive_maximum_exceeded, profile="limits", covers5="MQTT-3.3.4-7")


def packet_too_large(port, v=V5):
    sub = conn(port, "bystander", v=v)
    sub.send(subscribe(1, [("big/#", 0)], v5=v == V5))
    c = conn(port, "big", v=v)
    c.send(publish("big/t", "y" * 300, v5=v == V5), wait=0.2)
    c.close()
    sub.send(disconnect(v == V5))
    sub.close()


raw("raw_v5_packet_too_large", packet_too_large, profile="limits", covers5="MQTT-3.2.2-15")
raw("raw_v311_packet_too_large", lambda port: packet_too_large(port, V311), profile="limits")


def server_keep_alive(port):
    c = conn(port, "ka", v=V5, keep_alive=60)
    c.send(disconnect(True))
    c.close()
    c = conn(port, "ka0", v=V5, keep_alive=0)
    c.send(disconnect(True))
    c.close()


raw("raw_v5_server_keep_alive", server_keep_alive, profile="limits", covers5="MQTT-3.2.2-21 MQTT-3.2.2-22")


def limits_connack(port):
    c = conn(port, "lim", v=V5)
    c.send(disconnect(True))
    c.close()


raw("raw_v5_limits_connack", limits_connack, profile="limits", covers5="MQTT-3.2.2-17 MQTT-3.3.4-9")


def limits_alias(port):
    c = conn(port, "al", v=V5)
    c.send(publish("la/a", "1", v5=True, properties=props((TOPIC_ALIAS, u16(2)))))
    c.send(publish("la/b", "2", v5=True, properties=props((TOPIC_ALIAS, u16(3)))), wait=0.2)
    c.close()


raw("raw_v5_limits_topic_alias_maximum", limits_alias, profile="limits", covers5="MQTT-3.2.2-17 MQTT-3.3.2-9")


def queue_limit(port, v=V311):
    v5 = v == V5
    extra = {"properties": props((SESSION_EXPIRY, u32(60)))} if v5 else {}
    c = conn(port, "queued", v=v, clean=False, **extra)
    c.send(subscribe(1, [("ql/t", 1)], v5=v5))
    c.send(disconnect(v5))
    c.close()
    pub = conn(port, "pub", v=v)
    for i in range(8):
        pub.send(publish("ql/t", f"m{i}", qos=1, pid=i + 1, v5=v5), wait=0.02)
    pub.send(disconnect(v5))
    pub.close()
    c = conn(port, "queued", v=v, clean=False, **extra)
    for i in range(8):
        c.send(ack("puback", i + 1, v5), wait=0.05)
    c.send(disconnect(v5))
    c.close()


raw("raw_v311_offline_queue_limit", queue_limit, profile="limits")
raw("raw_v5_offline_queue_limit", lambda port: queue_limit(port, V5), profile="limits")
