"""Where mosquitto departs from the specification (or takes a different allowed choice), the output the
specification requires instead. Keyed by scenario; each entry replaces the recorded broker side of the
connections it lists (see conformance/src/replay.rs). Every case is listed in docs/conformance.md."""

DEVIATIONS = {
    'paho_v5_subscribe_options': (
        'mosquitto keeps the Retain As Published option of the first subscription when the same filter is subscribed again without it; the new subscription completely replaces the old one [MQTT-3.8.4-3], so the message clearing the retained topic arrives with RETAIN 0 [MQTT-3.3.1-12]',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x01]',
            'c1 < SUBACK pid=2 [0x00]',
            'c1 < PUBACK pid=3',
            'c1 < PUBLISH q0 retain "paho5/rap" payload="flagged"',
            'c1 < SUBACK pid=5 [0x00]',
            'c1 < PUBLISH q0 "paho5/rap" payload=""',
        ],
    ),
    'raw_v311_keepalive_timeout': (
        'mosquitto 2.0.11 closes a connection idle past its keep alive of 1 s only after about 4.6 s; the specification requires closing it after one and a half times the keep alive, 1.5 s [MQTT-3.1.2-24]',
        [
            'c1 < CONNACK session_present=0 0x00 Success',
            'c1 < close',
        ],
    ),
    'raw_v311_malformed_client_sends_suback': (
        'mosquitto ignores a SUBACK sent by a client; a packet only a server may send is a protocol violation, and the server MUST close the connection [MQTT-4.8.0-1]',
        [
            'c2 < CONNACK session_present=0 0x00 Success',
            'c2 < close',
        ],
    ),
    'raw_v311_malformed_pingreq_with_body': (
        'mosquitto answers a PINGREQ with a remaining length of 1; PINGREQ has no variable header and no payload, so the packet is malformed and the connection MUST be closed [MQTT-4.8.0-1]',
        [
            'c2 < CONNACK session_present=0 0x00 Success',
            'c2 < close',
        ],
    ),
    'raw_v311_malformed_publish_qos0_dup': (
        'mosquitto forwards a QoS 0 PUBLISH with DUP set; DUP MUST be 0 at QoS 0 [MQTT-3.3.1-2], so the packet is a protocol violation: the connection is closed [MQTT-4.8.0-1] and nothing is forwarded',
        [
            'c1 < CONNACK session_present=0 0x00 Success',
            'c1 < SUBACK pid=1 [0x00]',
            'c2 < CONNACK session_present=0 0x00 Success',
            'c2 < close',
            'c1 < PINGRESP',
        ],
    ),
    'raw_v311_will_keepalive': (
        'mosquitto 2.0.11 closes a connection idle past its keep alive of 1 s only after about 4.6 s; the specification requires closing it after one and a half times the keep alive, 1.5 s [MQTT-3.1.2-24]; the will is published when the connection is closed',
        [
            'c1 < CONNACK session_present=0 0x00 Success',
            'c1 < SUBACK pid=1 [0x02]',
            'c2 < CONNACK session_present=0 0x00 Success',
            'c1 < PUBLISH q0 "will/dying" payload="gone"',
            'c2 < close',
        ],
    ),
    'raw_v31_keepalive_timeout': (
        'mosquitto 2.0.11 closes a connection idle past its keep alive of 1 s only after about 4.6 s; the specification requires closing it after one and a half times the keep alive, 1.5 s [MQTT-3.1.2-24]',
        [
            'c1 < CONNACK session_present=0 0x00 Success',
            'c1 < close',
        ],
    ),
    'raw_v5_dollar_topics': (
        'difference, both conformant: mosquitto sends a v5 client one copy per matching subscription; Cicada sends one copy at the highest granted QoS (the Server MUST respect the maximum QoS of the matching subscriptions [MQTT-3.3.4-2] and MAY send further copies)',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00, 0x00, 0x00]',
            'c1 < PUBLISH q0 "$app/x" payload="hidden"',
            'c1 < PUBLISH q0 "app/x" payload="seen"',
        ],
    ),
    'raw_v5_keepalive_timeout': (
        'mosquitto 2.0.11 closes a connection idle past its keep alive of 1 s only after about 4.6 s; the specification requires closing it after one and a half times the keep alive, 1.5 s [MQTT-3.1.2-24]; Cicada also says why with DISCONNECT 0x8D first',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < DISCONNECT 0x8d Keep Alive timeout',
            'c1 < close',
        ],
    ),
    'raw_v5_malformed_non_minimal_varint': (
        'mosquitto accepts a remaining length encoded in more bytes than needed; a Variable Byte Integer MUST use the fewest bytes [MQTT-1.5.5-1], so the packet is malformed: DISCONNECT 0x81, nothing forwarded',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00]',
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x81 Malformed Packet',
            'c2 < close',
            'c1 < PINGRESP',
        ],
    ),
    'raw_v5_malformed_payload_format_invalid_utf8': (
        'difference, both conformant: mosquitto does not check payloads marked as UTF-8 (Payload Format Indicator 1) and forwards this invalid one; Cicada checks them, as the specification allows, and refuses it with DISCONNECT 0x99 Payload format invalid',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00]',
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x99 Payload format invalid',
            'c2 < close',
            'c1 < PINGRESP',
        ],
    ),
    'raw_v5_malformed_publish_subscription_identifier': (
        'mosquitto accepts and forwards a PUBLISH from a client carrying a Subscription Identifier; a client MUST NOT send one [MQTT-3.3.4-6], so it is a protocol error: DISCONNECT 0x82, nothing forwarded',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00]',
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x82 Protocol Error',
            'c2 < close',
            'c1 < PINGRESP',
        ],
    ),
    'raw_v5_malformed_pubrel_unknown_pid': (
        'difference: for a PUBREL with an unknown packet identifier mosquitto answers PUBCOMP 0x00; Cicada answers with the reason code the specification defines for this case, 0x92 Packet Identifier not found',
        [
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < PUBCOMP pid=42 0x92 Packet Identifier not found',
        ],
    ),
    'raw_v5_malformed_response_topic_wildcard': (
        'mosquitto forwards a PUBLISH whose Response Topic contains a wildcard, which subscribers cannot decode; the Response Topic MUST NOT contain wildcards [MQTT-3.3.2-14], so the publisher is disconnected (0x90) and nothing is forwarded',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00]',
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x90 Topic Name invalid',
            'c2 < close',
            'c1 < PINGRESP',
        ],
    ),
    'raw_v5_malformed_shared_no_local': (
        'mosquitto grants a shared subscription with No Local set; that is a protocol error [MQTT-3.8.3-4]: DISCONNECT 0x82',
        [
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x82 Protocol Error',
            'c2 < close',
        ],
    ),
    'raw_v5_malformed_subscription_identifier_zero': (
        'mosquitto answers 0x81 Malformed Packet; the specification calls a Subscription Identifier of 0 a Protocol Error (0x82)',
        [
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x82 Protocol Error',
            'c2 < close',
        ],
    ),
    'raw_v5_malformed_topic_alias_zero': (
        "mosquitto answers 0x81 Malformed Packet; a Topic Alias of 0 is not allowed [MQTT-3.3.2-8] and the specification's code for a bad alias is 0x94 Topic Alias invalid",
        [
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x94 Topic Alias invalid',
            'c2 < close',
        ],
    ),
    'raw_v5_receive_maximum_exceeded': (
        'mosquitto refuses the third unacknowledged QoS 2 PUBLISH with PUBREC 0x97 and keeps the connection; a client exceeding Receive Maximum [MQTT-3.3.4-7] gets DISCONNECT 0x93 Receive Maximum exceeded (section 4.9)',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=2 maximum_packet_size=256 topic_alias_maximum=2 server_keep_alive=10}',
            'c1 < PUBREC pid=1',
            'c1 < PUBREC pid=2',
            'c1 < DISCONNECT 0x93 Receive Maximum exceeded',
            'c1 < close',
        ],
    ),
    'raw_v5_shared_invalid_name': (
        'difference: a Share Name containing + breaks [MQTT-4.8.2-2]; mosquitto calls the packet malformed (0x81), Cicada calls the filter invalid (0x8F); both close the connection',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < DISCONNECT 0x8f Topic Filter invalid',
            'c1 < close',
        ],
    ),
    'raw_v5_wildcards': (
        'difference, both conformant: mosquitto sends a v5 client one copy per matching subscription; Cicada sends one copy at the highest granted QoS (the Server MUST respect the maximum QoS of the matching subscriptions [MQTT-3.3.4-2] and MAY send further copies)',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x00, 0x00, 0x00, 0x00]',
            'c1 < PUBLISH q0 "w/b/c" payload="w/b/c"',
            'c1 < PUBLISH q0 "w/a" payload="w/a"',
            'c1 < PUBLISH q0 "w/a/b/c" payload="w/a/b/c"',
            'c1 < PUBLISH q0 "top" payload="top"',
            'c1 < PUBLISH q0 "w//c" payload="w//c"',
            'c1 < PUBLISH q0 "w/b" payload="w/b"',
        ],
    ),
    'raw_v5_will_keepalive': (
        'mosquitto 2.0.11 closes a connection idle past its keep alive of 1 s only after about 4.6 s; the specification requires closing it after one and a half times the keep alive, 1.5 s [MQTT-3.1.2-24]; the will is published when the connection is closed',
        [
            'c1 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c1 < SUBACK pid=1 [0x02]',
            'c2 < CONNACK session_present=0 0x00 Success {receive_maximum=20 maximum_packet_size=1048576 topic_alias_maximum=10}',
            'c2 < DISCONNECT 0x8d Keep Alive timeout',
            'c1 < PUBLISH q0 "will/dying" payload="gone"',
            'c2 < close',
        ],
    ),
}
