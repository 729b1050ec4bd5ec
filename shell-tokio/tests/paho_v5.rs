//! MQTT 5 features end to end with the Eclipse Paho Python client (`paho-mqtt`, installed by the
//! test command): CONNACK properties (assigned client id, server keep alive, response information),
//! session and message expiry, request/response and property passthrough to v5 and v3.1.1
//! subscribers, payload format 0x99 and reason strings, subscription options and identifiers, Receive
//! Maximum and Maximum Packet Size both ways, inbound topic aliases, will delay, capabilities switched
//! off (advertised and enforced), `$SYS` topics, and server redirection. See `paho_v5_e2e.py`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

fn config(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_string()
}

#[test]
fn paho_v5_features() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = config(
        &dir,
        "main.toml",
        "[features]\nresponse_information_prefix = \"reply/\"\n\
         [limits]\nmax_keep_alive_secs = 30\nmax_packet_size = 4096\n\
         [sys]\ninterval_secs = 1\n",
    );
    let limited = config(
        &dir,
        "limited.toml",
        "[features]\nwildcard_subscriptions = false\nsubscription_identifiers = false\n\
         [shared_subscriptions]\nenabled = false\n\
         [limits]\nretain_available = false\nmax_qos = 1\n",
    );
    let redirect = config(
        &dir,
        "redirect.toml",
        "[redirect]\nserver_reference = \"elsewhere.example:1883\"\n",
    );
    let main = Broker::start(&["--config", &main]);
    let limited = Broker::start(&["--config", &limited]);
    let redirect = Broker::start(&["--config", &redirect]);
    let script = support::test_file("paho_v5_e2e.py");
    let out = run(
        Command::new("python3").arg(script).args([
            main.port.to_string(),
            limited.port.to_string(),
            redirect.port.to_string(),
        ]),
        Duration::from_secs(120),
    );
    assert!(out.contains("paho v5 e2e ok"), "{out}");
}
