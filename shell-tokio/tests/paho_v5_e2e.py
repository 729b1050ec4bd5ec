"""MQTT 5 features of the cicada broker, end to end with the Eclipse Paho Python client (paho-mqtt 2.x).

Usage: python3 paho_v5_e2e.py MAIN_PORT LIMITED_PORT REDIRECT_PORT
  MAIN_PORT      broker with [features] response_information_prefix = "reply/", [sys] interval_secs = 1,
                 limits.max_keep_alive_secs = 30, limits.max_packet_size = 4096
  LIMITED_PORT   broker with wildcards, subscription identifiers, shared subscriptions and retain off,
                 limits.max_qos = 1
  REDIRECT_PORT  broker with [redirect] server_reference = "elsewhere.example:1883"
Prints "<name> ok" per check and "paho v5 e2e ok" at the end; exits non-zero on the first failure.
"""

import queue
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

MAIN, LIMITED, REDIRECT = (int(p) for p in sys.argv[1:4])
TIMEOUT = 5.0


def props(packet_type, **values):
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def prop(properties, name, default=None):
    return getattr(properties, name, default) if properties is not None else default


class Client:
    """A paho v5 client whose callbacks feed queues, so checks read like a script."""

    def __init__(self, client_id, port=MAIN, clean=True, keepalive=30, connect_props=None,
                 will=None, manual_ack=False, expect_refusal=False):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.disconnects = queue.Queue()
        self.subacks = queue.Queue()
        self.c.on_connect = lambda _c, _u, flags, rc, p: self.connacks.put(
            (rc.value, flags.session_present, p))
        self.c.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.c.on_disconnect = lambda _c, _u, _f, rc, p: self.disconnects.put((rc.value, p))
        self.c.on_subscribe = lambda _c, _u, _mid, rcs, _p: self.subacks.put(
            [rc.value for rc in rcs])
        if will:
            self.c.will_set(**will)
        if manual_ack:
            self.c.manual_ack_set(True)
        self.c.connect("127.0.0.1", port, keepalive, clean_start=clean, properties=connect_props)
        self.c.loop_start()
        self.reason, self.session_present, self.connack = self.connacks.get(timeout=TIMEOUT)
        if expect_refusal:
            self.stop()
            if self.reason == 0:
                raise AssertionError(f"{client_id}: expected a refusal")
        elif self.reason != 0:
            self.stop()
            raise AssertionError(f"{client_id}: refused with {self.reason:#x}")

    def stop(self):
        """Stops the network thread (no automatic reconnect)."""
        self.c.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT, as a crash would."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()

    def close(self, **disconnect_props):
        p = props(PacketTypes.DISCONNECT, **disconnect_props) if disconnect_props else None
        self.c.disconnect(properties=p)
        time.sleep(0.1)
        self.c.loop_stop()

    def subscribe(self, topic, qos=1, sub_id=None, **options):
        p = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=sub_id) if sub_id else None
        self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **options), properties=p)
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic, payload, qos=1, retain=False, **publish_props):
        p = props(PacketTypes.PUBLISH, **publish_props) if publish_props else None
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=p)
        if qos > 0:
            info.wait_for_publish(TIMEOUT)

    def message(self, timeout=TIMEOUT):
        return self.messages.get(timeout=timeout)

    def no_message(self, wait=0.5):
        try:
            msg = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")

    def disconnected(self, timeout=TIMEOUT):
        return self.disconnects.get(timeout=timeout)


def check(name):
    def wrap(fn):
        fn()
        print(f"{name} ok", flush=True)
        return fn
    return wrap


@check("connack")
def connack_properties():
    asks = props(PacketTypes.CONNECT, RequestResponseInformation=1)
    c = Client("", keepalive=120, connect_props=asks)
    assigned = prop(c.connack, "AssignedClientIdentifier")
    assert assigned and assigned.startswith("cicada-"), assigned
    assert prop(c.connack, "ServerKeepAlive") == 30, c.connack
    assert prop(c.connack, "ResponseInformation") == "reply/" + assigned, c.connack
    assert prop(c.connack, "TopicAliasMaximum") == 64, c.connack
    assert prop(c.connack, "ReceiveMaximum") == 1024, c.connack
    assert prop(c.connack, "MaximumPacketSize") == 4096, c.connack
    # Everything offered: the "available" flags are absent, which means yes.
    for flag in ("WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
                 "SharedSubscriptionAvailable", "RetainAvailable", "MaximumQoS"):
        assert prop(c.connack, flag) is None, (flag, c.connack)
    c.close()


@check("session expiry")
def session_expiry():
    persistent = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    s = Client("se-sub", clean=False, connect_props=persistent)
    s.subscribe("se/t", qos=1)
    s.close()
    p = Client("se-pub")
    p.publish("se/t", "while away", qos=1)
    s = Client("se-sub", clean=False, connect_props=persistent)
    assert s.session_present, "session kept"
    assert s.message().payload == b"while away"
    # DISCONNECT may shorten the expiry: 0 ends the session now.
    s.close(SessionExpiryInterval=0)
    s = Client("se-sub", clean=False, connect_props=persistent)
    assert not s.session_present, "DISCONNECT with expiry 0 ended the session"
    s.close(SessionExpiryInterval=1)
    time.sleep(2.2)
    s = Client("se-sub", clean=False, connect_props=persistent)
    assert not s.session_present, "the session expired while offline"
    s.close(SessionExpiryInterval=0)
    p.close()


@check("message expiry")
def message_expiry():
    persistent = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    s = Client("me-sub", clean=False, connect_props=persistent)
    s.subscribe("me/t", qos=1)
    s.close()
    p = Client("me-pub")
    p.publish("me/t", "short", qos=1, MessageExpiryInterval=1)
    p.publish("me/t", "long", qos=1, MessageExpiryInterval=60)
    p.publish("me/retained", "stale", qos=1, retain=True, MessageExpiryInterval=1)
    p.publish("me/kept", "fresh", qos=1, retain=True, MessageExpiryInterval=60)
    time.sleep(2.2)
    s = Client("me-sub", clean=False, connect_props=persistent)
    msg = s.message()
    assert msg.payload == b"long", msg.payload
    left = prop(msg.properties, "MessageExpiryInterval")
    assert left is not None and 50 <= left < 60, f"forwarded with the remaining interval: {left}"
    s.no_message()
    s.subscribe("me/retained", qos=1)
    s.no_message()
    s.subscribe("me/kept", qos=1)
    msg = s.message()
    assert msg.payload == b"fresh" and msg.retain
    assert 50 <= prop(msg.properties, "MessageExpiryInterval") < 60
    s.close(SessionExpiryInterval=0)
    p.publish("me/kept", b"", qos=1, retain=True)
    p.close()


@check("request/response and properties")
def request_response():
    responder = Client("rr-responder")
    responder.subscribe("rr/req", qos=1)
    old = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rr-v311",
                      protocol=mqtt.MQTTv311)
    old_inbox = queue.Queue()
    old.on_message = lambda _c, _u, msg: old_inbox.put(msg)
    old.connect("127.0.0.1", MAIN, 30)
    old.loop_start()
    old.subscribe("rr/req", qos=1)
    requester = Client("rr-requester")
    requester.subscribe("rr/reply/requester", qos=1)
    time.sleep(0.2)
    p = props(PacketTypes.PUBLISH, ResponseTopic="rr/reply/requester",
              CorrelationData=b"\x01\x02", ContentType="text/plain", PayloadFormatIndicator=1)
    p.UserProperty = [("b", "1"), ("a", "2"), ("b", "3")]
    requester.c.publish("rr/req", "question", qos=1, properties=p).wait_for_publish(TIMEOUT)
    req = responder.message()
    rp = req.properties
    assert prop(rp, "ResponseTopic") == "rr/reply/requester", rp
    assert prop(rp, "CorrelationData") == b"\x01\x02", rp
    assert prop(rp, "ContentType") == "text/plain", rp
    assert prop(rp, "PayloadFormatIndicator") == 1, rp
    assert prop(rp, "UserProperty") == [("b", "1"), ("a", "2"), ("b", "3")], rp
    responder.publish(prop(rp, "ResponseTopic"), "answer", qos=1,
                      CorrelationData=prop(rp, "CorrelationData"))
    reply = requester.message()
    assert reply.payload == b"answer" and prop(reply.properties, "CorrelationData") == b"\x01\x02"
    # The 3.1.1 subscriber gets the message, properties stripped.
    plain = old_inbox.get(timeout=TIMEOUT)
    assert plain.payload == b"question" and plain.topic == "rr/req"
    old.disconnect()
    old.loop_stop()
    for c in (responder, requester):
        c.close()


@check("payload format and reason strings")
def payload_format():
    c = Client("pfi-bad")
    c.c.publish("pfi/t", b"\xff\xfe", qos=0, properties=props(PacketTypes.PUBLISH,
                                                              PayloadFormatIndicator=1))
    rc, p = c.disconnected()
    assert rc == 0x99, hex(rc)
    assert prop(p, "ReasonString"), "a reason string, since problem information was not refused"
    c.stop()
    quiet = props(PacketTypes.CONNECT, RequestProblemInformation=0)
    c = Client("pfi-quiet", connect_props=quiet)
    c.c.publish("pfi/t", b"\xff", qos=0, properties=props(PacketTypes.PUBLISH,
                                                          PayloadFormatIndicator=1))
    rc, p = c.disconnected()
    assert rc == 0x99 and prop(p, "ReasonString") is None, (hex(rc), p)
    c.stop()


@check("subscription options")
def subscription_options():
    me = Client("so-me")
    other = Client("so-other")
    me.subscribe("so/nl", qos=1, noLocal=True)
    me.publish("so/nl", "mine")
    other.publish("so/nl", "theirs")
    assert me.message().payload == b"theirs", "No Local: own messages are not echoed"
    me.no_message()
    other.publish("so/rap", "kept", retain=True)
    rap = Client("so-rap")
    rap.subscribe("so/rap", qos=1, retainAsPublished=True, retainHandling=2)
    plain = Client("so-plain")
    plain.subscribe("so/rap", qos=1, retainHandling=2)
    rap.no_message(0.3)
    plain.no_message(0.3)
    other.publish("so/rap", "live", retain=True)
    assert rap.message().retain, "Retain As Published keeps the flag"
    assert not plain.message().retain, "without it, live messages lose the flag"
    # Retain Handling: 0 always, 1 only for a new subscription, 2 never.
    rh = Client("so-rh")
    rh.subscribe("so/rap", qos=1, retainHandling=0)
    assert rh.message().payload == b"live"
    rh.subscribe("so/rap", qos=1, retainHandling=0)
    assert rh.message().payload == b"live", "0 sends again on a repeated SUBSCRIBE"
    rh.subscribe("so/rap", qos=1, retainHandling=1)
    rh.no_message()
    rh.subscribe("so/rap/#", qos=1, retainHandling=1)
    assert rh.message().payload == b"live", "1 sends for a new subscription"
    other.publish("so/rap", b"", retain=True)
    for c in (me, other, rap, plain, rh):
        c.close()


@check("subscription identifiers")
def subscription_identifiers():
    s = Client("sid-sub")
    s.subscribe("sid/#", qos=1, sub_id=5)
    s.subscribe("sid/+/x", qos=1, sub_id=7)
    s.subscribe("sid/a/+", qos=1)
    p = Client("sid-pub")
    p.publish("sid/a/x", "one")
    msg = s.message()
    ids = prop(msg.properties, "SubscriptionIdentifier")
    assert sorted(ids) == [5, 7], ids
    s.no_message()
    s.close()
    p.close()


@check("flow control")
def flow_control():
    s = Client("fc-sub", connect_props=props(PacketTypes.CONNECT, ReceiveMaximum=2,
                                             MaximumPacketSize=200),
               manual_ack=True)
    s.subscribe("fc/t", qos=1)
    p = Client("fc-pub")
    p.publish("fc/t", "x" * 500)  # larger than the subscriber accepts: dropped for it
    for i in range(5):
        p.publish("fc/t", str(i))
    first = [s.message(), s.message()]
    s.no_message(0.5)  # Receive Maximum 2: nothing more until we acknowledge
    assert [m.payload for m in first] == [b"0", b"1"], [m.payload for m in first]
    for m in first:
        s.c.ack(m.mid, 1)
    rest = [s.message(), s.message()]
    assert [m.payload for m in rest] == [b"2", b"3"]
    for m in rest:
        s.c.ack(m.mid, 1)
    last = s.message()
    assert last.payload == b"4"
    s.c.ack(last.mid, 1)
    # Our Maximum Packet Size (4096) the other way: too large is 0x95.
    big = Client("fc-big")
    big.c.publish("fc/t", "y" * 5000, qos=0)
    rc, _ = big.disconnected()
    assert rc == 0x95, hex(rc)
    big.stop()
    s.close()
    p.close()


@check("topic aliases from the client")
def inbound_aliases():
    s = Client("ta-sub")
    s.subscribe("ta/#", qos=1)
    p = Client("ta-pub")
    p.publish("ta/long/topic", "set", TopicAlias=3)
    p.publish("", "use", TopicAlias=3)
    assert [(m.topic, m.payload) for m in (s.message(), s.message())] == [
        ("ta/long/topic", b"set"), ("ta/long/topic", b"use")]
    p.c.publish("ta/x", "over", qos=0, properties=props(PacketTypes.PUBLISH, TopicAlias=65))
    rc, _ = p.disconnected()
    assert rc == 0x94, hex(rc)
    p.stop()
    s.close()


@check("will delay")
def will_delay():
    w = Client("wd-watch")
    w.subscribe("wd/#", qos=1)
    will_props = props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)
    session = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    gone = Client("wd-gone", clean=False, connect_props=session,
                  will={"topic": "wd/gone", "payload": "bye", "qos": 1,
                        "properties": will_props})
    gone.drop()
    w.no_message(1.0)
    assert w.message(timeout=3).payload == b"bye", "sent after the delay"
    back = Client("wd-back", clean=False, connect_props=session,
                  will={"topic": "wd/back", "payload": "bye", "qos": 1,
                        "properties": will_props})
    back.drop()
    time.sleep(0.5)
    back = Client("wd-back", clean=False, connect_props=session)
    w.no_message(2.5)  # reconnecting within the delay cancels the will
    # The session ending first sends the will early.
    short = props(PacketTypes.CONNECT, SessionExpiryInterval=1)
    early = Client("wd-early", clean=False, connect_props=short,
                   will={"topic": "wd/early", "payload": "bye", "qos": 1,
                         "properties": props(PacketTypes.WILLMESSAGE, WillDelayInterval=30)})
    early.drop()
    assert w.message(timeout=4).topic == "wd/early"
    back.close(SessionExpiryInterval=0)
    w.close()


@check("capabilities switched off")
def limited_broker():
    c = Client("lim", port=LIMITED)
    for flag in ("WildcardSubscriptionAvailable", "SubscriptionIdentifierAvailable",
                 "SharedSubscriptionAvailable", "RetainAvailable"):
        assert prop(c.connack, flag) == 0, (flag, c.connack)
    assert prop(c.connack, "MaximumQoS") == 1, c.connack
    assert c.subscribe("lim/+", qos=1) == [0xA2]
    assert c.subscribe("$share/g/lim", qos=1) == [0x9E]
    assert c.subscribe("lim/exact", qos=2) == [1], "granted at most QoS 1"
    c.c.publish("lim/exact", "r", qos=0, retain=True)
    rc, _ = c.disconnected()
    assert rc == 0x9A, hex(rc)
    c.stop()
    c = Client("lim-sid", port=LIMITED)
    c.c.subscribe("lim/x", options=SubscribeOptions(qos=1),
                  properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=3))
    rc, _ = c.disconnected()
    assert rc == 0xA1, hex(rc)
    c.stop()


@check("$SYS topics")
def sys_topics():
    c = Client("sys-watch")
    c.subscribe("$SYS/broker/clients/connected", qos=0)
    msg = c.message(timeout=3)
    assert msg.retain, "the last value is retained for new subscribers"
    # That value may predate this client; the next update (every second) counts it.
    while int(msg.payload) < 1:
        msg = c.message(timeout=3)
    c.subscribe("$SYS/broker/version", qos=0)
    assert c.message(timeout=3).payload.startswith(b"cicada ")
    c.close()


@check("server redirection")
def redirect():
    c = Client("moved", port=REDIRECT, expect_refusal=True)
    assert c.reason == 0x9C, hex(c.reason)
    assert prop(c.connack, "ServerReference") == "elsewhere.example:1883", c.connack


print("paho v5 e2e ok")
