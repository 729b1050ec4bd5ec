"""Three `cicada` processes as one cluster, driven by Eclipse Paho clients (paho-mqtt 2.x).

Usage: python3 cluster_e2e.py BINARY WORKDIR PKI_DIR
PKI_DIR holds ca.pem and node-N.pem / node-N.key for N = 1, 2, 3, 4 (mTLS between the nodes).
Exits non-zero with a message on the first failure; prints "cluster e2e ok" and the figures it measured.

1. A subscriber on node 2, a QoS 1 publisher on node 1.
2. Node 3 is killed with SIGKILL mid-traffic (it may be the raft leader); traffic goes on; node 3 restarts
   from its data directory, rejoins, and a subscriber there gets the messages published after.
3. Node 1 (the publisher's) is killed with SIGKILL mid-traffic; the publisher reconnects to node 2 and goes
   on. Every message the publisher had acknowledged reaches both subscribers.
4. Node 1 restarts and rejoins: all three agree on the leader and the log, and a message published on
   node 1 reaches both subscribers.
4b. A shared subscription group with a member on node 2 and one on node 3 gets 60 messages published on
   node 1: each once, in turn (30 each).
5. A persistent MQTT 5 session goes offline on node 1, which queues QoS 2 messages for it; its client
   resumes on node 3 and gets the session (session present = 1) and each queued message once.
6. Node 3 is drained to node 2 through the admin API: its client is disconnected with 0x9C and node 2's
   address as Server Reference, a new CONNECT is refused the same way, and the client following the
   reference resumes its session (with what was queued meanwhile) on node 2; ending the drain lets clients in.
7. Node 2, now holding that session offline with five acknowledged QoS 2 messages queued, is killed with
   SIGKILL; the client resumes on node 3 from its replicated copy (session present = 1) and gets each of
   the five once; node 2 restarts and rejoins.
7b. The session moves back to node 2, which is killed again holding it offline, with two clients with
   wills connected: the leader declares it down after peer_timeout, the messages published meanwhile are
   acknowledged and reach the client on another node once, and both wills reach a subscriber once.
8. A fourth node joins through the admin API, gets the state as a snapshot in parts (every node sends
   snapshots in parts of at most 512 bytes here), serves a subscriber, and leaves.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

BINARY, WORK, PKI = sys.argv[1], sys.argv[2], sys.argv[3]
NODES = (1, 2, 3)
TOKEN = "cluster-e2e-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, n, ports):
        self.n = n
        self.mqtt, self.cluster, self.http = ports
        self.dir = os.path.join(WORK, f"node{n}")
        self.config = os.path.join(WORK, f"node{n}.toml")
        self.log = os.path.join(WORK, f"node{n}.log")
        self.proc = None

    def write_config(self, nodes, join=False):
        members = "".join(
            f'[[cluster.members]]\nnode = {m.n}\naddress = "127.0.0.1:{m.cluster}"\n'
            f'mqtt = "127.0.0.1:{m.mqtt}"\n\n'
            for m in nodes
        )
        with open(self.config, "w") as f:
            f.write(
                f"""[server]
listen = ["127.0.0.1:{self.mqtt}"]
data_dir = "{self.dir}"

[sys]
interval_secs = 0

[http]
listen = "127.0.0.1:{self.http}"
admin_token_file = "{os.path.join(WORK, 'token')}"

[cluster]
node = {self.n}
join = {"true" if join else "false"}
snapshot_part_bytes = 512

[cluster.tls]
cert = "{os.path.join(PKI, f'node-{self.n}.pem')}"
key = "{os.path.join(PKI, f'node-{self.n}.key')}"
ca = "{os.path.join(PKI, 'ca.pem')}"

{members}"""
            )

    def start(self):
        log = open(self.log, "a")
        self.proc = subprocess.Popen(
            [BINARY, "--config", self.config, "--log-level", "info"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                fail(f"node {self.n} exited at start:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.mqtt), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        fail(f"node {self.n} did not listen:\n{self.tail()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def state(self):
        try:
            return self.admin("GET", "/api/v1/cluster")
        except OSError:
            return None

    def admin(self, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http}{path}",
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode(),
        )
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.load(r)

    def tail(self):
        try:
            with open(self.log) as f:
                return "".join(f.readlines()[-40:])
        except OSError:
            return ""


def fail(message):
    for node in nodes:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
    print(f"FAIL: {message}", flush=True)
    for node in nodes:
        print(f"--- node {node.n} log tail ---\n{node.tail()}")
    sys.exit(1)


def wait_for(what, check, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


def agreed(live):
    """The leader every live node names, once they all name the same one and applied the same index."""
    states = [n.state() for n in live]
    if any(s is None or s["leader"] is None for s in states):
        return None
    if len({s["leader"] for s in states}) != 1 or len({s["applied_index"] for s in states}) != 1:
        return None
    return states[0]["leader"]


class Inbox:
    """The payloads a client received, in order (paho calls on_message from its network thread)."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()

    def on_message(self, _client, _userdata, msg):
        with self.lock:
            self.got.append(msg.payload.decode())

    def received(self):
        with self.lock:
            return list(self.got)


class Subscriber(Inbox):
    def __init__(self, name, node, filters=("cl/#",)):
        super().__init__()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", node.mqtt, keepalive=30)
        self.client.loop_start()
        for f in filters:
            self.client.subscribe(f, qos=1)


def with_will(name, node, payload, v5):
    """A client on `node` with a QoS 1 will to dev/<name>: MQTT 3.1.1 with a clean session, or MQTT 5 with
    a persistent session (expiry 300 s) and a will delay of 2 s. Its network loop is stopped once
    connected, so it never reconnects: its node's death is its connection's end."""
    if v5:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        will = Properties(PacketTypes.WILLMESSAGE)
        will.WillDelayInterval = 2
        client.will_set(f"dev/{name}", payload, qos=1, properties=will)
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = 300
        client.connect("127.0.0.1", node.mqtt, keepalive=60, clean_start=True, properties=connect)
    else:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311,
                             clean_session=True)
        client.will_set(f"dev/{name}", payload, qos=1)
        client.connect("127.0.0.1", node.mqtt, keepalive=60)
    client.loop_start()
    wait_for(f"{name}'s CONNACK", client.is_connected, timeout=10)
    client.loop_stop()
    return client


class Publisher:
    """Publishes cl/data messages with payload = sequence number, one at a time, each waited for."""

    def __init__(self, node):
        self.acked = []
        self.client = None
        self.connect(node)

    def connect(self, node):
        if self.client:
            self.client.loop_stop()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cl-publisher")
        connacked = []
        self.client.on_connect = lambda *_args: connacked.append(time.time())
        started = time.time()
        self.client.connect("127.0.0.1", node.mqtt, keepalive=30)
        self.client.loop_start()
        wait_for("the publisher's CONNACK", self.client.is_connected, timeout=10)
        # Timed in the CONNACK callback, not by the 50 ms polling of wait_for.
        return connacked[0] - started

    def leave(self):
        """Disconnects for good: a paho client left looping reconnects and takes the client id back
        from the next publisher, every second."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, seq, timeout=3.0):
        """True once the broker acknowledged the message."""
        info = self.client.publish("cl/data", str(seq), qos=1)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        if info.is_published():
            self.acked.append(str(seq))
            return True
        return False


def publish_acked(publisher, topic, payload, qos, what, retain=False):
    """Publishes and fails the test unless the broker acknowledges within 3 s."""
    info = publisher.client.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(3)
    if not info.is_published():
        fail(f"{payload} {what} was not acknowledged")


def probe_until_received(publisher_node, subscribers, what):
    """Interest reaches other nodes through the raft log: probe until every subscriber gets one."""
    probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cl-probe-{publisher_node.n}")
    probe.connect("127.0.0.1", publisher_node.mqtt, keepalive=30)
    probe.loop_start()
    try:
        wait_for(
            what,
            lambda: probe.publish("cl/probe", "probe", qos=1).wait_for_publish(1)
            or all("probe" in s.received() for s in subscribers),
        )
        wait_for(what, lambda: all("probe" in s.received() for s in subscribers))
    finally:
        probe.disconnect()
        probe.loop_stop()


def watchdog():
    for node in nodes:
        if node.proc and node.proc.poll() is None:
            node.proc.kill()
    print("FAIL: the cluster test took over 170 s", flush=True)
    for node in nodes:
        print(f"--- node {node.n} log tail ---\n{node.tail()}")
    os._exit(1)


dog = threading.Timer(170, watchdog)
dog.daemon = True
dog.start()
with open(os.path.join(WORK, "token"), "w") as f:
    f.write(TOKEN)
nodes = [Node(n, (free_port(), free_port(), free_port())) for n in NODES]
n1, n2, n3 = nodes
for node in nodes:
    node.write_config(nodes)
for node in nodes:
    node.start()
leader = wait_for("a leader all three agree on", lambda: agreed(nodes))
print(f"leader: node {leader}", flush=True)

# 1. Subscriber on node 2, publisher on node 1.
sub2 = Subscriber("cl-sub-2", n2)
probe_until_received(n1, [sub2], "the subscription on node 2 to reach node 1")
publisher = Publisher(n1)
for seq in range(0, 100):
    if not publisher.publish(seq):
        fail(f"message {seq} not acknowledged with all nodes up")

# 2. Kill node 3 mid-traffic: a background publisher keeps going while it dies.
was_leader = (n3.state() or {}).get("is_leader")
seq = 100
killer = threading.Timer(0.05, n3.kill)
killer.start()
while seq < 200:
    if not publisher.publish(seq):
        fail(f"message {seq} not acknowledged while node 3 died (it carries none of this traffic)")
    seq += 1
killer.join()
wait_for("a leader after node 3's death", lambda: agreed([n1, n2]))
print(f"node 3 killed (was leader: {was_leader}); {len(publisher.acked)} acknowledged so far", flush=True)
n3.start()
wait_for("node 3 to rejoin", lambda: agreed(nodes))
sub3 = Subscriber("cl-sub-3", n3)
probe_until_received(n1, [sub2, sub3], "the subscription on node 3 to reach node 1")
first_for_sub3 = seq
while seq < 300:
    if not publisher.publish(seq):
        fail(f"message {seq} not acknowledged after node 3 rejoined")
    seq += 1

# 3. Kill node 1, the publisher's node, mid-traffic; the publisher moves to node 2.
killer = threading.Timer(0.1, n1.kill)
killer.start()
killed_at = None
while seq < 500:
    if publisher.publish(seq):
        seq += 1
        continue
    if killed_at is None:
        killer.join()
        killed_at = time.time()
        connect_took = publisher.connect(n2)
        print(
            f"publisher reconnected to node 2 in {connect_took * 1000:.0f} ms "
            f"({(time.time() - killed_at) * 1000:.0f} ms after noticing node 1 was gone)",
            flush=True,
        )
        # Resend the one that was not acknowledged.
        continue
    fail(f"message {seq} not acknowledged by node 2 after the failover")
if killed_at is None:
    fail("node 1 was killed but the publisher never noticed")


def everything_acked(sub, since):
    acked = [a for a in publisher.acked if int(a) >= since]
    got = set(sub.received())
    return [a for a in acked if a not in got]


wait_for("every acknowledged message at node 2", lambda: not everything_acked(sub2, 0), timeout=10)
wait_for("every acknowledged message at node 3", lambda: not everything_acked(sub3, first_for_sub3), timeout=10)
print(f"{len(publisher.acked)} acknowledged messages, all received by both subscribers", flush=True)

# 4. Node 1 restarts and rejoins.
n1.start()
wait_for("node 1 to rejoin", lambda: agreed(nodes))
publisher.leave()
final = Publisher(n1)
if not final.publish("after-rejoin"):
    fail("a message published on the rejoined node 1 was not acknowledged")
wait_for(
    "the message from the rejoined node at both subscribers",
    lambda: all("after-rejoin" in s.received() for s in (sub2, sub3)),
)

# 4b. A shared subscription group with a member on node 2 and one on node 3, the publisher on node 1:
#     node 1 picks a node per message, weighted by members, so each member gets every second message,
#     and no message goes to both.
members = [Subscriber(f"cl-worker-{node.n}", node, filters=("$share/work/cl/jobs/#",)) for node in (n2, n3)]
probes = [0]


def every_member_probed():
    probes[0] += 1
    final.client.publish("cl/jobs/x", f"probe-{probes[0]}", qos=1).wait_for_publish(1)
    return all(any(p.startswith("probe-") for p in m.received()) for m in members)


wait_for("the shared group's members on nodes 2 and 3 to reach node 1", every_member_probed)
for i in range(60):
    publish_acked(final, "cl/jobs/x", f"job-{i}", 1, "to the shared group")


def jobs(member):
    return [p for p in member.received() if p.startswith("job-")]


wait_for("every job at one member", lambda: sum(len(jobs(m)) for m in members) >= 60, timeout=10)
time.sleep(0.5)
got = sorted(int(p[len("job-"):]) for m in members for p in jobs(m))
if got != list(range(60)):
    fail(f"the shared group got {got}, not each of 60 jobs once")
split = [len(jobs(m)) for m in members]
if split != [30, 30]:
    fail(f"the jobs were split {split} between the members on nodes 2 and 3, not in turn")
for m in members:
    m.client.disconnect()
    m.client.loop_stop()
print(f"shared group across nodes 2 and 3: 60 jobs, each once, split {split}", flush=True)

# 5. A persistent session (MQTT 5, Session Expiry 1 h) follows its client from node 1 to node 3, with the
#    QoS 2 messages node 1 queued for it while it was offline.
class Roamer(Inbox):
    def __init__(self):
        super().__init__()
        self.present = None
        self.connacked = None
        self.client = None
        self.disconnected = None

    def connect(self, node, clean_start):
        self.present = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="cl-roamer", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self.on_message
        self.client.on_connect = self.on_connect
        self.client.on_disconnect = self.on_disconnect
        self.disconnected = None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        started = time.time()
        self.client.connect(
            "127.0.0.1", node.mqtt, keepalive=30, clean_start=clean_start, properties=props
        )
        self.client.loop_start()
        wait_for(f"the roamer's CONNACK from node {node.n}", lambda: self.present is not None, timeout=10)
        return self.connacked - started

    def on_connect(self, _client, _userdata, flags, reason_code, _properties):
        self.connacked = time.time()
        self.present = bool(flags.session_present) if not reason_code.is_failure else None

    def on_disconnect(self, _client, _userdata, _flags, reason_code, properties):
        reference = getattr(properties, "ServerReference", None) if properties else None
        self.disconnected = (reason_code.value, reference)

    def leave(self):
        self.client.disconnect()
        self.client.loop_stop()


roamer = Roamer()
roamer.connect(n1, clean_start=True)
subscribed = threading.Event()
roamer.client.on_subscribe = lambda *_args: subscribed.set()
roamer.client.subscribe("roam/#", qos=2)
wait_for("the roamer's SUBACK", subscribed.is_set)
roamer.leave()
queued = [f"queued-{i}" for i in range(5)]
for payload in queued:
    publish_acked(final, "roam/x", payload, 2, "for the offline roamer")
took = roamer.connect(n3, clean_start=False)
if not roamer.present:
    fail("the roamer resumed on node 3 without its session (session present = 0)")
wait_for("the queued messages on node 3", lambda: roamer.received() == queued, timeout=10)
print(f"persistent session handed over from node 1 to node 3: CONNACK in {took * 1000:.0f} ms, "
      f"{len(queued)} queued QoS 2 messages delivered once", flush=True)
state1, state3 = n1.state(), n3.state()
if state1["handovers_sent"] < 1 or state3["handovers_received"] < 1:
    fail(f"handover counters: node 1 sent {state1['handovers_sent']}, node 3 got {state3['handovers_received']}")
# Once node 3's interest commits, node 1 routes to it.
def probes_reach_roamer(prefix):
    """Publishes `prefix`0, `prefix`1, ... on node 1 until one reaches the roamer (its node's interest
    travels through the log)."""
    sent = iter(range(1000))

    def reached():
        final.client.publish("roam/x", f"{prefix}{next(sent)}", qos=1)
        time.sleep(0.1)
        return any(m.startswith(prefix) for m in roamer.received())

    return reached


wait_for("a message published on node 1 at the moved roamer", probes_reach_roamer("after-move-"))
got = roamer.received()
if len(got) != len(set(got)):
    fail(f"the roamer got a message twice: {got}")
roamer.leave()

# 6. Drain node 3 to node 2: the roamer is sent away with 0x9C Use another server and node 2's address,
#    new clients are refused with the same, and the session follows the client to node 2.
roamer.connect(n3, clean_start=False)
if not roamer.present:
    fail("the roamer lost its session on node 3 between two connections")
drained = n3.admin("POST", "/api/v1/cluster/drain?to=2")
reference = f"127.0.0.1:{n2.mqtt}"
if drained.get("draining_to") != reference:
    fail(f"drain answered {drained}, expected draining_to {reference}")
wait_for("the roamer's DISCONNECT from the draining node", lambda: roamer.disconnected is not None)
roamer.client.loop_stop()
if roamer.disconnected != (0x9C, reference):
    fail(f"the roamer was disconnected with {roamer.disconnected}, expected (0x9C, {reference!r})")

refused = []
newcomer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cl-newcomer", protocol=mqtt.MQTTv5)
newcomer.on_connect = lambda _c, _u, _f, rc, props: refused.append(
    (rc.value, getattr(props, "ServerReference", None))
)
newcomer.connect("127.0.0.1", n3.mqtt, keepalive=30)
newcomer.loop_start()
wait_for("the draining node's CONNACK", lambda: refused)
newcomer.loop_stop()
if refused[0] != (0x9C, reference):
    fail(f"a CONNECT to the draining node got {refused[0]}, expected (0x9C, {reference!r})")

publish_acked(final, "roam/x", "while-draining", 2, "for the drained roamer")
host, port = roamer.disconnected[1].rsplit(":", 1)
target = next(n for n in nodes if n.mqtt == int(port))
took = roamer.connect(target, clean_start=False)
if not roamer.present:
    fail(f"the roamer reconnected to the Server Reference (node {target.n}) without its session")
wait_for("the message queued while draining", lambda: "while-draining" in roamer.received(), timeout=10)
got = roamer.received()
if len(got) != len(set(got)):
    fail(f"the roamer got a message twice: {got}")
print(f"drained node 3: the roamer followed the Server Reference to node {target.n} and resumed its session "
      f"(CONNACK in {took * 1000:.0f} ms)", flush=True)
roamer.leave()
if n3.admin("DELETE", "/api/v1/cluster/drain").get("draining_to") is not None:
    fail("the drain of node 3 did not end")
final.leave()
back = Publisher(n3)
back.leave()

def resume_with(node, expected, why):
    """The roamer resumes on `node` after `why`: its session must be there, with each of `expected`
    once."""
    took = roamer.connect(node, clean_start=False)
    if not roamer.present:
        fail(f"the roamer resumed on node {node.n} without its session after {why}")
    wait_for(
        f"the roamer's messages after {why}",
        lambda: all(m in roamer.received() for m in expected),
        timeout=10,
    )
    got = roamer.received()
    if any(got.count(m) != 1 for m in expected):
        fail(f"the roamer got a message twice after {why}: {got}")
    return took


# 7. Fail-over: node 2 holds the roamer's session (offline) with five QoS 2 messages queued and is killed
#    with SIGKILL. The roamer resumes on node 3 from node 3's copy, replicated through the log: session
#    present = 1 and every acknowledged message, once.
owner = target
survivor = next(n for n in nodes if n is not owner and n is not n1)
final = Publisher(n1)  # the same client id as `back`, which just left
failover = [f"failover-{i}" for i in range(5)]
for payload in failover:
    publish_acked(final, "roam/x", payload, 2, "for the offline roamer")
owner.kill()
took = resume_with(survivor, failover, f"node {owner.n} died")
got = roamer.received()
if len(got) != len(set(got)):
    fail(f"the roamer got a message twice after the fail-over: {got}")
state = survivor.state()
if state["failovers"] < 1:
    fail(f"node {survivor.n} took no session from its copy: {state}")
print(f"node {owner.n} killed with the roamer's session: it resumed on node {survivor.n} from the replicated "
      f"copy (CONNACK in {took * 1000:.0f} ms, {len(failover)} acknowledged QoS 2 messages delivered once)",
      flush=True)
roamer.leave()
owner.start()
wait_for(f"node {owner.n} to rejoin", lambda: agreed(nodes))

# 7b. Declared down: the roamer's session moves back to that node, which is killed again while it holds
#     the session offline. QoS 2 messages published for it meanwhile wait for the dead node; after
#     peer_timeout (10 s) the leader declares the node down, adopts the session from its copy and takes
#     the waiting messages: their publisher is acknowledged, and the roamer, back on another node, gets
#     each once.
roamer.connect(owner, clean_start=False)
if not roamer.present:
    fail(f"the roamer lost its session moving to node {owner.n}")
wait_for(f"a message published on node 1 at the roamer on node {owner.n}", probes_reach_roamer("probe-"))
roamer.leave()
# Two clients with wills on the node about to die, and a watcher of their wills on the survivor: their
# connections die with the node, so the adopter publishes both wills, each once (the clean session's
# from the table, the persistent one's from its copy after its delay).
status = Subscriber("cl-status", survivor, filters=("dev/#", "cl/#"))
probe_until_received(owner, [status], "the will watcher's interest on every node")
devices = [with_will("cl-device", owner, "device-offline", v5=False),
           with_will("cl-sensor", owner, "sensor-offline", v5=True)]
owner.kill()
killed = time.time()
dead = [f"while-dead-{i}" for i in range(3)]
infos = [final.client.publish("roam/x", payload, qos=2) for payload in dead]
for info in infos:
    info.wait_for_publish(25)
    if not info.is_published():
        fail(f"a message published for node {owner.n}'s session while it was dead was never acknowledged")
acked_after = time.time() - killed
took = resume_with(survivor, dead, f"node {owner.n} was declared down")
adopted = sum(n.state()["sessions_adopted"] for n in (n1, survivor))
if adopted < 1:
    fail(f"no node adopted the dead node's session: {n1.state()} {survivor.state()}")
print(f"node {owner.n} killed holding the roamer's session: declared down and the session adopted; the "
      f"{len(dead)} QoS 2 messages published meanwhile were acknowledged {acked_after:.1f} s after the kill "
      f"and reached the roamer once on node {survivor.n} (CONNACK in {took * 1000:.0f} ms)", flush=True)
wills = ["device-offline", "sensor-offline"]
wait_for("the wills of the dead node's clients",
         lambda: all(w in status.received() for w in wills), timeout=15)
wills_after = time.time() - killed
time.sleep(1)
got = [p for p in status.received() if p in wills]
if sorted(got) != wills:
    fail(f"the dead node's wills were not published once each: {got}")
print(f"the wills of node {owner.n}'s two clients (MQTT 3.1.1 clean session; MQTT 5 persistent with a 2 s "
      f"will delay) reached a subscriber on node {survivor.n} once each, {wills_after:.1f} s after the kill",
      flush=True)
status.client.disconnect()
status.client.loop_stop()
roamer.leave()
owner.start()
wait_for(f"node {owner.n} to rejoin after it was declared down", lambda: agreed(nodes))

# 8. Join and leave: node 4 starts with `cluster.join = true` (nodes 1-3 as its seeds) and takes no part
#    until node 1's admin API adds it. It gets the cluster's state as a snapshot (a retained message set
#    before it existed), serves a subscriber that gets a message published on node 1, and counts in the
#    majority. Then node 4 leaves through node 2's admin API and disconnects its client.
final.leave()
final = Publisher(n1)
publish_acked(final, "cl/retained", "set-before-the-join", 1, "(retained)", retain=True)
n4 = Node(4, (free_port(), free_port(), free_port()))
n4.write_config(nodes + [n4], join=True)
nodes.append(n4)
n4.start()
time.sleep(1)
if n4.state()["members"]:
    fail(f"node 4 is a member before it was added: {n4.state()}")
started = time.time()
answer = n1.admin(
    "POST",
    "/api/v1/cluster/members",
    {"node": 4, "address": f"127.0.0.1:{n4.cluster}", "mqtt": f"127.0.0.1:{n4.mqtt}"},
)
if answer.get("state") != "proposed":
    fail(f"adding node 4 was answered {answer}")
live = [n for n in nodes if n.proc.poll() is None]
wait_for("node 4 to join", lambda: agreed(live) and len(n4.state()["members"]) == 4)
joined = time.time() - started
state4 = n4.state()
if state4["snapshots_received"] < 1:
    fail(f"node 4 joined without a snapshot: {state4}")
# Parts of 512 bytes (snapshot_part_bytes): the snapshot came in several.
if state4["raft_parts_received"] < 2:
    fail(f"node 4's snapshot did not come in parts: {state4}")
watcher = Subscriber("cl-watcher", n4)
wait_for("the retained message on node 4", lambda: "set-before-the-join" in watcher.received(), timeout=10)
probe_until_received(n1, [watcher], "node 4's subscriber")
print(f"node 4 joined through node 1's admin API in {joined * 1000:.0f} ms (state by snapshot at index "
      f"{state4['snapshot_index']}, in {state4['raft_parts_received']} parts of at most 512 bytes); its "
      f"subscriber gets messages published on node 1", flush=True)
gone = []
watcher.client.on_disconnect = lambda *_args: gone.append(time.time())
removing = time.time()
answer = n2.admin("DELETE", "/api/v1/cluster/members/4")
if answer.get("state") != "proposed":
    fail(f"removing node 4 was answered {answer}")
wait_for("node 4 to leave", lambda: all(len(n.state()["members"]) == 3 for n in (n1, n2, n3)))
# Node 4 disconnects its client when it applies its removal, or, if the commit never reaches it (the
# leader stops talking to it once the removal applies), when it finds itself without a leader
# (election timeout, then fence_after).
wait_for("node 4 to disconnect its client", lambda: gone, timeout=30)
watcher.client.loop_stop()
print(f"node 4 left through node 2's admin API and disconnected its client {gone[0] - removing:.1f} s after "
      f"the DELETE (learned its removal: {n4.state()['removed']})", flush=True)

for node in nodes:
    node.proc.terminate()
for node in nodes:
    node.proc.wait(timeout=15)
print("cluster e2e ok", flush=True)
