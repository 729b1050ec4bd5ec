//! End to end with MQTT.js 5 (Node; installed by the test command with `npm ci`): SCRAM-SHA-256
//! enhanced authentication through the AUTH exchange (accepted, re-authentication, wrong password,
//! unknown user, unknown method) and outbound topic aliases, which MQTT.js validates strictly.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

#[test]
fn mqttjs_scram_authentication_and_topic_aliases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let line = run(
        Command::new(env!("CARGO_BIN_EXE_cicada"))
            .args(["scram-user", "alice"])
            .stdin(std::fs::File::open(write(&dir, "pw", "pencil\n")).expect("open")),
        Duration::from_secs(30),
    );
    assert!(line.starts_with("alice:SCRAM-SHA-256$4096:"), "{line}");
    let creds = write(&dir, "scram.txt", &line);
    let config = write(
        &dir,
        "cicada.toml",
        &format!(
            "[auth]\nscram_credentials = {:?}\n",
            creds.display().to_string()
        ),
    );
    let broker = Broker::start(&["--config", config.to_str().expect("utf-8 path")]);
    let script = support::test_file("mqttjs/v5_e2e.js");
    let out = run(
        Command::new("node")
            .arg(script)
            .arg(broker.port.to_string()),
        Duration::from_secs(60),
    );
    assert!(
        out.contains("scram ok") && out.contains("aliases ok"),
        "{out}"
    );
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path
}
