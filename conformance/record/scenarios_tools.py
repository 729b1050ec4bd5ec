"""Scenarios from mosquitto_pub / mosquitto_sub and from rumqttc (conformance/examples/rumqttc_client.rs)."""

import os
import signal
import subprocess
import time

from scenario import add

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUMQTTC = os.path.join(ROOT, "target", "debug", "examples", "rumqttc_client")


def tool_version():
    out = subprocess.run(["mosquitto_pub", "--help"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()[0]
    return first.strip()


MOSQ = "mosquitto_pub/mosquitto_sub (" + tool_version() + ")"


def sub_start(port, *args):
    p = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return p


def pub(port, *args):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), *args],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    time.sleep(0.1)


def finish(p, timeout=3):
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait()


for version, tag in (("mqttv311", "v311"), ("mqttv5", "v5"), ("mqttv31", "v31")):
    for qos in ("0", "1", "2"):
        def pubsub(port, version=version, qos=qos):
            s = sub_start(port, "-V", version, "-t", "tools/t", "-q", qos, "-C", "1", "-i", "msub")
            pub(port, "-V", version, "-t", "tools/t", "-q", qos, "-m", f"qos {qos}", "-i", "mpub")
            finish(s)
        add(f"mosquitto_{tag}_pub_sub_qos{qos}", pubsub, MOSQ,
            covers311="MQTT-4.3.2-1" if tag == "v311" and qos == "1" else "",
            covers5="MQTT-4.3.2-4" if tag == "v5" and qos == "1" else "")

    def retained(port, version=version):
        pub(port, "-V", version, "-t", "tools/r", "-m", "kept", "-r", "-q", "1")
        s = sub_start(port, "-V", version, "-t", "tools/r", "-C", "1", "-i", "mlate")
        finish(s)
        pub(port, "-V", version, "-t", "tools/r", "-n", "-r")
        s = sub_start(port, "-V", version, "-t", "tools/r", "-W", "1", "-i", "mempty")
        finish(s)
    add(f"mosquitto_{tag}_retained_set_and_clear", retained, MOSQ,
        covers311="MQTT-3.3.1-10 MQTT-3.3.1-11" if tag == "v311" else "",
        covers5="MQTT-3.3.1-6 MQTT-3.3.1-7" if tag == "v5" else "")

    def will(port, version=version):
        s = sub_start(port, "-V", version, "-t", "tools/will", "-C", "1", "-i", "mwatch")
        d = sub_start(port, "-V", version, "-t", "tools/nothing", "-i", "mdying",
                      "--will-topic", "tools/will", "--will-payload", "gone", "--will-qos", "1")
        d.send_signal(signal.SIGKILL)
        d.wait()
        finish(s)
    add(f"mosquitto_{tag}_will_on_kill", will, MOSQ,
        covers311="MQTT-3.1.2-8" if tag == "v311" else "", covers5="MQTT-3.1.2-8" if tag == "v5" else "")

    def lines(port, version=version):
        s = sub_start(port, "-V", version, "-t", "tools/lines", "-C", "3", "-q", "1", "-i", "mlines")
        p = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", version,
                              "-t", "tools/lines", "-l", "-q", "1", "-i", "mpubl"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        p.communicate(b"one\ntwo\nthree\n", timeout=10)
        finish(s)
    add(f"mosquitto_{tag}_pub_lines", lines, MOSQ)


def persistent(port):
    s = sub_start(port, "-t", "tools/p", "-q", "1", "-c", "-i", "mpersist", "-W", "1")
    finish(s)
    pub(port, "-t", "tools/p", "-q", "1", "-m", "queued")
    s = sub_start(port, "-t", "tools/p", "-q", "1", "-c", "-i", "mpersist", "-C", "1")
    finish(s)


add("mosquitto_v311_persistent_session", persistent, MOSQ, covers311="MQTT-3.1.2-4")


def v5_properties(port):
    s = sub_start(port, "-V", "mqttv5", "-t", "tools/props", "-C", "1", "-i", "mprops-sub",
                  "-D", "subscribe", "subscription-identifier", "7")
    pub(port, "-V", "mqttv5", "-t", "tools/props", "-m", "with props", "-i", "mprops",
        "-D", "publish", "user-property", "k", "v",
        "-D", "publish", "message-expiry-interval", "30",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "tools/reply",
        "-D", "publish", "correlation-data", "c0ffee")
    finish(s)


add("mosquitto_v5_publish_properties", v5_properties, MOSQ,
    covers5="MQTT-3.3.2-15 MQTT-3.3.2-16 MQTT-3.3.2-17 MQTT-3.3.2-20 MQTT-3.3.4-3")


def v5_session_expiry(port):
    s = sub_start(port, "-V", "mqttv5", "-t", "tools/sx", "-q", "1", "-c", "-i", "msx",
                  "-x", "60", "-W", "1")
    finish(s)
    pub(port, "-V", "mqttv5", "-t", "tools/sx", "-q", "1", "-m", "queued")
    s = sub_start(port, "-V", "mqttv5", "-t", "tools/sx", "-q", "1", "-c", "-i", "msx",
                  "-x", "60", "-C", "1")
    finish(s)


add("mosquitto_v5_session_expiry_queue", v5_session_expiry, MOSQ, covers5="MQTT-3.1.2-5 MQTT-4.5.0-1")


# ---------------------------------------------------------------- rumqttc

RUMQTTC_CLIENT = "rumqttc 0.24 (conformance/examples/rumqttc_client.rs)"


def rumqttc(port, scenario):
    subprocess.run([RUMQTTC, str(port), scenario], check=True, timeout=30)


for name, ids311, ids5 in (
        ("v311_qos0", "", ""), ("v311_qos1", "MQTT-4.3.2-2", ""), ("v311_qos2", "MQTT-4.3.3-2", ""),
        ("v311_retained", "MQTT-3.3.1-10", ""), ("v311_will", "MQTT-3.1.2-8", ""),
        ("v311_persistent", "MQTT-3.1.2-4", ""), ("v311_unsubscribe", "MQTT-3.10.4-4", ""),
        ("v5_qos0", "", ""), ("v5_qos1", "", "MQTT-4.3.2-4"), ("v5_qos2", "", "MQTT-4.3.3-8"),
        ("v5_retained", "", "MQTT-3.3.1-9"), ("v5_topic_alias", "", "MQTT-3.3.2-12"),
        ("v5_user_properties", "", "MQTT-3.3.2-17 MQTT-3.3.2-18")):
    add(f"rumqttc_{name}", lambda port, n=name: rumqttc(port, n), RUMQTTC_CLIENT,
        covers311=ids311, covers5=ids5)
