"""End-to-end checks of the cicada broker's transports with the Eclipse Paho Python client (paho-mqtt 2.x).

Usage:
    python3 paho_transports_e2e.py TLS_PORT MTLS_PORT WS_PORT WSS_PORT \
        CA CLIENT_CERT CLIENT_KEY UNTRUSTED_CERT UNTRUSTED_KEY

TLS_PORT: TLS without client certificates; MTLS_PORT: TLS with client_auth = "required";
WS_PORT: WebSocket on /mqtt; WSS_PORT: WebSocket over TLS on /mqtt. The server certificate is for
`localhost`, signed by CA; CLIENT_CERT is signed by CA, UNTRUSTED_CERT by another CA.
Exits non-zero with a message on the first failure; prints "paho transports ok" at the end.
"""

import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

(
    TLS_PORT,
    MTLS_PORT,
    WS_PORT,
    WSS_PORT,
) = (int(p) for p in sys.argv[1:5])
CA, CLIENT_CERT, CLIENT_KEY, UNTRUSTED_CERT, UNTRUSTED_KEY = sys.argv[5:10]

# The server certificate names localhost: connecting by that name checks it.
HOST = "localhost"


class Endpoint:
    """Where and how a client connects: a port, a transport, TLS settings."""

    def __init__(self, name, port, websocket=False, tls=False, certfile=None, keyfile=None):
        self.name = name
        self.port = port
        self.websocket = websocket
        self.tls = tls
        self.certfile = certfile
        self.keyfile = keyfile

    def client(self, client_id, protocol):
        kwargs = {"client_id": client_id, "protocol": protocol}
        if protocol != mqtt.MQTTv5:
            kwargs["clean_session"] = True
        if self.websocket:
            kwargs["transport"] = "websockets"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        if self.websocket:
            c.ws_set_options(path="/mqtt")
        if self.tls:
            # Verifies the server certificate against the test CA, hostname included.
            c.tls_set(ca_certs=CA, certfile=self.certfile, keyfile=self.keyfile)
        return c


TLS = Endpoint("tls", TLS_PORT, tls=True)
MTLS = Endpoint("mtls", MTLS_PORT, tls=True, certfile=CLIENT_CERT, keyfile=CLIENT_KEY)
WS = Endpoint("ws", WS_PORT, websocket=True)
WSS = Endpoint("wss", WSS_PORT, websocket=True, tls=True)


class Session:
    """A connected client with its network loop running and an inbox."""

    def __init__(self, endpoint, client_id, protocol):
        self.label = f"{client_id} over {endpoint.name}"
        self.messages = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connack = None
        self.suback = None
        self.client = endpoint.client(client_id, protocol)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(HOST, endpoint.port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(10):
            self.close()
            raise AssertionError(f"{self.label}: no CONNACK within 10 s")
        if self.connack.is_failure:
            self.close()
            raise AssertionError(f"{self.label}: connection refused: {self.connack}")

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties):
        self.connack = reason_code
        self.connected.set()

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties):
        self.suback = reason_codes
        self.subscribed.set()

    def _on_message(self, _client, _userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, msg.payload.decode(), msg.qos, msg.retain))
            self.cond.notify_all()

    def subscribe(self, topic, qos):
        self.subscribed.clear()
        result, _ = self.client.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"{self.label}: subscribe: {result}"
        assert self.subscribed.wait(10), f"{self.label}: no SUBACK within 10 s"
        granted = [int(rc.value) for rc in self.suback]
        assert granted == [qos], f"{self.label}: SUBACK {granted}, wanted [{qos}]"

    def publish(self, topic, payload, qos):
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published(), f"{self.label}: PUBLISH {topic} not acknowledged"

    def wait_for(self, count, timeout=10.0):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.messages) < count:
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError(f"{self.label}: expected {count} messages, got {self.messages}")
                self.cond.wait(left)
            return list(self.messages)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def round_trip(sub_endpoint, pub_endpoint, sub_protocol, pub_protocol, name):
    """A subscriber on one endpoint gets a QoS 1 message a publisher on another sends."""
    topic = f"transports/{name}"
    sub = Session(sub_endpoint, f"{name}-sub", sub_protocol)
    sub.subscribe(f"{topic}/#", qos=1)
    pub = Session(pub_endpoint, f"{name}-pub", pub_protocol)
    pub.publish(f"{topic}/m", f"hello {name}", qos=1)
    got = sub.wait_for(1)
    assert got == [(f"{topic}/m", f"hello {name}", 1, False)], f"{name}: {got}"
    # Nothing else (a duplicate, say) arrives.
    time.sleep(0.2)
    assert len(sub.messages) == 1, f"{name}: {sub.messages}"
    for s in (pub, sub):
        s.close()


def refused(endpoint, client_id, wait=3.0):
    """The connection never reaches a successful CONNACK: the TLS handshake is refused.

    With TLS 1.3 the client's side of the handshake may complete before the server has checked the
    client certificate, so `connect` may return; the server's alert then ends the connection.
    Returns how it failed, for the log.
    """
    c = endpoint.client(client_id, mqtt.MQTTv311)
    accepted = threading.Event()
    outcome = []

    def on_connect(_client, _userdata, _flags, reason_code, _properties):
        outcome.append(f"CONNACK {reason_code}")
        if not reason_code.is_failure:
            accepted.set()

    def on_disconnect(_client, _userdata, _flags, reason_code, _properties):
        outcome.append(f"disconnected: {reason_code}")

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    try:
        c.connect(HOST, endpoint.port, keepalive=30)
    except (ssl.SSLError, OSError) as e:
        return f"connect raised {type(e).__name__}: {e}"
    c.loop_start()
    try:
        assert not accepted.wait(wait), f"{client_id}: connected to the mTLS listener: {outcome}"
    finally:
        c.disconnect()
        c.loop_stop()
    return "; ".join(outcome) or "no CONNACK"


# (a) TLS, both protocol versions, the server certificate verified against the CA.
round_trip(TLS, TLS, mqtt.MQTTv311, mqtt.MQTTv311, "tls311")
round_trip(TLS, TLS, mqtt.MQTTv5, mqtt.MQTTv5, "tls5")
# (b) mTLS with a client certificate the CA signed.
round_trip(MTLS, MTLS, mqtt.MQTTv5, mqtt.MQTTv311, "mtls")
# (c) mTLS refuses a certificate from another CA, and no certificate at all.
untrusted = Endpoint("mtls-untrusted", MTLS_PORT, tls=True, certfile=UNTRUSTED_CERT, keyfile=UNTRUSTED_KEY)
print("untrusted client certificate:", refused(untrusted, "mtls-untrusted"))
anonymous = Endpoint("mtls-anonymous", MTLS_PORT, tls=True)
print("no client certificate:", refused(anonymous, "mtls-anonymous"))
# (d) WebSocket, (e) WebSocket over TLS.
round_trip(WS, WS, mqtt.MQTTv311, mqtt.MQTTv5, "ws")
round_trip(WSS, WSS, mqtt.MQTTv5, mqtt.MQTTv311, "wss")
# (f) Across transports.
round_trip(WS, TLS, mqtt.MQTTv5, mqtt.MQTTv311, "tls-to-ws")
round_trip(MTLS, WSS, mqtt.MQTTv311, mqtt.MQTTv5, "wss-to-mtls")
print("paho transports ok")
