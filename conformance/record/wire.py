"""Hand-built MQTT packets and a raw socket client, for malformed input, limits and exact timing."""

import socket
import struct
import time

V31, V311, V5 = 3, 4, 5


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    data = text.encode() if isinstance(text, str) else text
    return struct.pack(">H", len(data)) + data


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


# v5 properties: (identifier, encoded value) pairs.
def props(*pairs):
    body = b"".join(bytes([pid]) + value for pid, value in pairs)
    return varint(len(body)) + body


def u8(v):
    return bytes([v])


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION = 0x01, 0x02, 0x03, 0x08, 0x09
SUB_ID, SESSION_EXPIRY, AUTH_METHOD, AUTH_DATA = 0x0B, 0x11, 0x15, 0x16
REQUEST_PROBLEM, WILL_DELAY, REQUEST_RESPONSE = 0x17, 0x18, 0x19
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, MAXIMUM_QOS = 0x21, 0x22, 0x23, 0x24
USER_PROPERTY, MAXIMUM_PACKET_SIZE, REASON_STRING = 0x26, 0x27, 0x1F


def user(k, v):
    return (USER_PROPERTY, s(k) + s(v))


def connect(client_id, version=V311, clean=True, keep_alive=60, will=None, username=None,
            password=None, properties=None, flags_extra=0, name=None):
    """will = (topic, payload, qos, retain[, will properties])"""
    flags = (0x02 if clean else 0) | flags_extra
    payload = s(client_id)
    if will:
        topic, msg, qos, retain = will[:4]
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if version == V5:
            payload += will[4] if len(will) > 4 else props()
        payload += s(topic) + s(msg)
    if username is not None:
        flags |= 0x80
        payload += s(username)
    if password is not None:
        flags |= 0x40
        payload += s(password)
    proto = name or ("MQIsdp" if version == V31 else "MQTT")
    body = s(proto) + bytes([version, flags]) + u16(keep_alive)
    if version == V5:
        body += properties if properties is not None else props()
    return packet(0x10, body + payload)


def publish(topic, payload=b"", qos=0, pid=None, retain=False, dup=False, v5=False,
            properties=None):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = s(topic)
    if qos:
        body += u16(pid)
    if v5:
        body += properties if properties is not None else props()
    data = payload.encode() if isinstance(payload, str) else payload
    return packet(first, body + data)


def ack(kind, pid, v5=False, reason=None, properties=None):
    """kind: puback | pubrec | pubrel | pubcomp"""
    first = {"puback": 0x40, "pubrec": 0x50, "pubrel": 0x62, "pubcomp": 0x70}[kind]
    body = u16(pid)
    if v5 and (reason is not None or properties is not None):
        body += bytes([reason or 0])
        if properties is not None:
            body += properties
    return packet(first, body)


def subscribe(pid, filters, v5=False, properties=None, first=0x82):
    """filters: [(filter, options byte)]"""
    body = u16(pid)
    if v5:
        body += properties if properties is not None else props()
    for f, opts in filters:
        body += s(f) + bytes([opts])
    return packet(first, body)


def unsubscribe(pid, filters, v5=False, first=0xA2):
    body = u16(pid)
    if v5:
        body += props()
    for f in filters:
        body += s(f)
    return packet(first, body)


PINGREQ = bytes([0xC0, 0x00])


def disconnect(v5=False, reason=0, properties=None):
    if not v5 or (reason == 0 and properties is None):
        return bytes([0xE0, 0x00])
    body = bytes([reason]) + (properties if properties is not None else props())
    return packet(0xE0, body)


def auth(reason, properties):
    return packet(0xF0, bytes([reason]) + properties)


class Raw:
    """A raw client: writes exactly the bytes given and reads (and discards) whatever comes back, so the
    trace holds exactly what a scenario intends."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.closed = False

    def send(self, data, wait=0.05):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True
        self.read(wait)
        return self

    def read(self, wait):
        """Reads for `wait` seconds; notices the broker closing."""
        deadline = time.time() + wait
        got = b""
        while not self.closed:
            left = deadline - time.time()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            got += chunk
        return got

    def close(self):
        if not self.closed:
            self.sock.close()
            self.closed = True
