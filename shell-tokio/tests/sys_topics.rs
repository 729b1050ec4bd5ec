//! `$SYS/broker/...` end to end: mosquitto_sub reads the broker's counters.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use support::{run, Broker};

#[test]
fn mosquitto_sub_reads_sys_counters() {
    let mut config = tempfile::NamedTempFile::new().expect("temp file");
    writeln!(config, "[sys]\ninterval_secs = 1").expect("write config");
    let path = config.path().to_string_lossy().into_owned();
    let broker = Broker::start(&["--config", &path]);
    let out = run(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args([
                "-t",
                "$SYS/broker/clients/connected",
                "-t",
                "$SYS/broker/version",
            ])
            .args(["-C", "2", "-W", "10", "-v"]),
        Duration::from_secs(15),
    );
    assert!(
        out.contains("$SYS/broker/clients/connected 1"),
        "the subscriber itself is connected: {out}"
    );
    assert!(out.contains("$SYS/broker/version cicada "), "{out}");
}
