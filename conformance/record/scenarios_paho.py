"""Scenarios from paho-mqtt (Python), MQTT 3.1.1 and 5.0."""

import threading
import time

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from scenario import add

CLIENT = f"paho-mqtt {paho.mqtt.__version__} (Python)"


class Paho:
    """A synchronous wrapper: each call waits for its acknowledgement, so traces are orderly."""

    def __init__(self, port, client_id, v5=False, clean=True, keepalive=60, will=None,
                 connect_props=None):
        self.v5 = v5
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kw = {} if v5 else {"clean_session": clean}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol, **kw)
        self.messages = []
        self.got = threading.Condition()
        self.connected = threading.Event()
        self.c.on_message = self._on_message
        self.c.on_connect = lambda *a: self.connected.set()
        if will:
            topic, payload, qos, retain = will[:4]
            self.c.will_set(topic, payload, qos, retain, properties=will[4] if len(will) > 4 else None)
        args = {"keepalive": keepalive}
        if v5:
            args["clean_start"] = clean
            if connect_props is not None:
                args["properties"] = connect_props
        self.c.connect("127.0.0.1", port, **args)
        self.c.loop_start()
        if not self.connected.wait(5):
            raise RuntimeError("no CONNACK")

    def _on_message(self, _c, _u, msg):
        with self.got:
            self.messages.append(msg)
            self.got.notify_all()

    def sub(self, topic, qos=0, options=None, properties=None):
        if self.v5:
            opts = options or SubscribeOptions(qos=qos)
            info = self.c.subscribe(topic, options=opts, properties=properties)
        else:
            info = self.c.subscribe(topic, qos)
        time.sleep(0.1)
        return info

    def unsub(self, topic):
        self.c.unsubscribe(topic)
        time.sleep(0.1)

    def pub(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(5)
        time.sleep(0.05)

    def wait(self, n, timeout=3.0):
        deadline = time.time() + timeout
        with self.got:
            while len(self.messages) < n and time.time() < deadline:
                self.got.wait(deadline - time.time())
        time.sleep(0.05)
        return self.messages

    def disconnect(self):
        self.c.disconnect()
        time.sleep(0.05)
        self.c.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT (the will fires)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock:
            sock.close()
        time.sleep(0.1)


def paho(name, fn, **kw):
    add(name, fn, CLIENT, **kw)


def tag(v5):
    return "v5" if v5 else "v311"


for v5 in (False, True):
    def connect_disconnect(port, v5=v5):
        Paho(port, "paho-plain", v5).disconnect()
    paho(f"paho_{tag(v5)}_connect_disconnect", connect_disconnect,
         covers311="" if v5 else "MQTT-3.2.0-1", covers5="MQTT-3.1.4-5" if v5 else "")

    for qos in (0, 1, 2):
        def roundtrip(port, v5=v5, qos=qos):
            c = Paho(port, f"paho-q{qos}", v5)
            c.sub("paho/rt", qos)
            c.pub("paho/rt", f"qos {qos}", qos)
            c.wait(1)
            c.disconnect()
        paho(f"paho_{tag(v5)}_qos{qos}_roundtrip", roundtrip,
             covers311="" if v5 else "MQTT-4.3.3-2 MQTT-4.3.2-2",
             covers5="MQTT-4.3.3-8 MQTT-4.3.3-11" if v5 else "")

        def pub_sub(port, v5=v5, qos=qos):
            s = Paho(port, f"paho-sub{qos}", v5)
            s.sub("paho/ps/#", 2)
            p = Paho(port, f"paho-pub{qos}", v5)
            for i in range(3):
                p.pub(f"paho/ps/{i}", f"m{i}", qos)
            s.wait(3)
            p.disconnect()
            s.disconnect()
        paho(f"paho_{tag(v5)}_two_clients_qos{qos}", pub_sub,
             covers311="" if v5 else "MQTT-4.6.0-6", covers5="MQTT-4.6.0-6" if v5 else "")

    def retained(port, v5=v5):
        p = Paho(port, "paho-retainer", v5)
        p.pub("paho/ret/a", "kept", 1, retain=True)
        s = Paho(port, "paho-late", v5)
        s.sub("paho/ret/#", 1)
        s.wait(1)
        p.pub("paho/ret/a", b"", 0, retain=True)
        s.disconnect()
        p.disconnect()
    paho(f"paho_{tag(v5)}_retained", retained,
         covers311="" if v5 else "MQTT-3.3.1-5 MQTT-3.3.1-10",
         covers5="MQTT-3.3.1-5 MQTT-3.3.1-6" if v5 else "")

    def will(port, v5=v5):
        s = Paho(port, "paho-watch", v5)
        s.sub("paho/will", 1)
        d = Paho(port, "paho-dying", v5, will=("paho/will", "gone", 1, False))
        d.drop()
        s.wait(1)
        s.disconnect()
    paho(f"paho_{tag(v5)}_will", will, covers311="" if v5 else "MQTT-3.1.2-8",
         covers5="MQTT-3.1.2-8" if v5 else "")

    def will_not_sent(port, v5=v5):
        s = Paho(port, "paho-watch", v5)
        s.sub("paho/will", 1)
        d = Paho(port, "paho-leaving", v5, will=("paho/will", "should not", 1, False))
        d.disconnect()
        s.wait(1, timeout=0.5)
        s.disconnect()
    paho(f"paho_{tag(v5)}_will_not_sent_on_disconnect", will_not_sent,
         covers311="" if v5 else "MQTT-3.1.2-10", covers5="MQTT-3.14.4-3" if v5 else "")

    def persistent(port, v5=v5):
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 60
        c = Paho(port, "paho-persist", v5, clean=False, connect_props=props)
        c.sub("paho/persist", 1)
        c.disconnect()
        p = Paho(port, "paho-pub", v5)
        p.pub("paho/persist", "while away", 1)
        p.disconnect()
        c = Paho(port, "paho-persist", v5, clean=False, connect_props=props)
        c.wait(1)
        c.disconnect()
    paho(f"paho_{tag(v5)}_persistent_session", persistent,
         covers311="" if v5 else "MQTT-3.1.2-4", covers5="MQTT-3.1.2-5" if v5 else "")

    def unsubscribe(port, v5=v5):
        c = Paho(port, "paho-unsub", v5)
        c.sub("paho/u", 0)
        c.unsub("paho/u")
        c.pub("paho/u", "nobody", 0)
        c.wait(1, timeout=0.3)
        c.disconnect()
    paho(f"paho_{tag(v5)}_unsubscribe", unsubscribe,
         covers311="" if v5 else "MQTT-3.10.4-4", covers5="MQTT-3.10.4-4" if v5 else "")

    def wildcard(port, v5=v5):
        c = Paho(port, "paho-wild", v5)
        c.sub("paho/+/x", 0)
        c.sub("paho/deep/#", 0)
        for t in ("paho/a/x", "paho/deep", "paho/deep/1/2", "paho/a/y"):
            c.pub(t, t, 0)
        c.wait(3)
        c.disconnect()
    paho(f"paho_{tag(v5)}_wildcards", wildcard,
         covers311="" if v5 else "MQTT-4.7.1-2", covers5="MQTT-4.7.1-2" if v5 else "")


def v5_properties(port):
    s = Paho(port, "paho5-sub", True)
    s.sub("paho5/req", 1)
    p = Paho(port, "paho5-pub", True)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "paho5/reply"
    props.CorrelationData = b"corr-1"
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.UserProperty = [("a", "1"), ("b", "2"), ("a", "3")]
    props.MessageExpiryInterval = 60
    p.pub("paho5/req", '{"q":1}', 1, properties=props)
    s.wait(1)
    p.disconnect()
    s.disconnect()


paho("paho_v5_publish_properties", v5_properties,
     covers5="MQTT-3.3.2-15 MQTT-3.3.2-16 MQTT-3.3.2-17 MQTT-3.3.2-18 MQTT-3.3.2-20 MQTT-3.3.2-4")


def v5_subscribe_options(port):
    c = Paho(port, "paho5-opts", True)
    c.sub("paho5/nl", options=SubscribeOptions(qos=1, noLocal=True))
    c.sub("paho5/rap", options=SubscribeOptions(qos=0, retainAsPublished=True))
    c.pub("paho5/nl", "not for me", 1)
    c.pub("paho5/rap", "flagged", 0, retain=True)
    c.wait(1)
    c.sub("paho5/rap", options=SubscribeOptions(qos=0, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
    c.pub("paho5/rap", b"", 0, retain=True)
    c.disconnect()


paho("paho_v5_subscribe_options", v5_subscribe_options,
     covers5="MQTT-3.8.3-3 MQTT-3.3.1-13 MQTT-3.3.1-11")


def v5_subscription_identifier(port):
    c = Paho(port, "paho5-subid", True)
    props = Properties(PacketTypes.SUBSCRIBE)
    props.SubscriptionIdentifier = 42
    c.sub("paho5/sid/#", 0, properties=props)
    c.pub("paho5/sid/x", "tagged", 0)
    c.wait(1)
    c.disconnect()


paho("paho_v5_subscription_identifier", v5_subscription_identifier, covers5="MQTT-3.3.4-3")


def v5_message_expiry(port):
    c = Paho(port, "paho5-exp", True)
    props = Properties(PacketTypes.PUBLISH)
    props.MessageExpiryInterval = 1
    c.pub("paho5/exp", "short lived", 0, retain=True, properties=props)
    time.sleep(2.0)
    c.sub("paho5/exp", 0)
    c.wait(1, timeout=0.3)
    c.disconnect()


paho("paho_v5_message_expiry", v5_message_expiry, covers5="MQTT-3.3.2-5")


def v5_session_expiry(port):
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 1
    c = Paho(port, "paho5-sx", True, clean=False, connect_props=props)
    c.sub("paho5/sx", 1)
    c.disconnect()
    time.sleep(2.0)
    c = Paho(port, "paho5-sx", True, clean=False, connect_props=props)
    c.disconnect()


paho("paho_v5_session_expiry", v5_session_expiry, covers5="MQTT-4.1.0-2")


def v5_will_delay(port):
    s = Paho(port, "paho5-watch", True)
    s.sub("paho5/wd", 0)
    wp = Properties(PacketTypes.WILLMESSAGE)
    wp.WillDelayInterval = 1
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 10
    d = Paho(port, "paho5-delayed", True, will=("paho5/wd", "after a second", 0, False, wp),
             connect_props=cp)
    d.drop()
    s.wait(1, timeout=2.0)
    s.disconnect()


paho("paho_v5_will_delay", v5_will_delay, covers5="MQTT-3.1.2-8")


def v5_topic_alias(port):
    s = Paho(port, "paho5-alias-sub", True)
    s.sub("paho5/alias/#", 0)
    p = Paho(port, "paho5-alias-pub", True)
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 1
    p.pub("paho5/alias/long/topic/name", "set", 0, properties=first)
    again = Properties(PacketTypes.PUBLISH)
    again.TopicAlias = 1
    p.pub("", "reuse", 0, properties=again)
    s.wait(2)
    p.disconnect()
    s.disconnect()


paho("paho_v5_topic_alias", v5_topic_alias, covers5="MQTT-3.3.2-12")


def v5_shared(port):
    a = Paho(port, "paho5-share-a", True)
    a.sub("$share/grp/paho5/job", 1)
    p = Paho(port, "paho5-boss", True)
    p.pub("paho5/job", "work", 1)
    a.wait(1)
    p.disconnect()
    a.disconnect()


paho("paho_v5_shared_subscription", v5_shared, covers5="MQTT-4.8.2-1 MQTT-4.8.2-3")


def v5_user_properties_connect(port):
    props = Properties(PacketTypes.CONNECT)
    props.UserProperty = [("region", "eu")]
    props.ReceiveMaximum = 10
    props.MaximumPacketSize = 65536
    c = Paho(port, "paho5-cprops", True, connect_props=props)
    c.disconnect()


paho("paho_v5_connect_properties", v5_user_properties_connect)
