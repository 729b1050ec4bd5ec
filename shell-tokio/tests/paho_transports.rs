//! End to end over the broker's transports with the Eclipse Paho Python client (`paho-mqtt` 2.x,
//! installed by the test command): TLS (3.1.1 and 5.0), mTLS accepted and refused, WebSocket, WSS,
//! and messages crossing from one transport to another.

mod support;

use std::process::Command;
use std::time::Duration;

use cicada_transports::testing::TestPki;
use support::{run, Broker};

fn listener(kind: &str, port: u16, tls: Option<String>) -> String {
    let mut entry = format!("[[listener]]\nkind = \"{kind}\"\nbind = \"127.0.0.1:{port}\"\n");
    if kind.starts_with("ws") {
        entry.push_str("path = \"/mqtt\"\n");
    }
    entry.push_str(&tls.unwrap_or_default());
    entry
}

#[test]
fn paho_over_tls_mtls_ws_and_wss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = TestPki::generate(dir.path());
    let good = pki.client("paho-client");
    let rogue = pki.untrusted_client("paho-rogue");
    let (broker, [tls, mtls, ws, wss]) =
        Broker::with_listeners(dir.path(), |[tls, mtls, ws, wss]| {
            [
                listener("tls", tls, Some(pki.tls_section("none"))),
                listener("tls", mtls, Some(pki.tls_section("required"))),
                listener("ws", ws, None),
                listener("wss", wss, Some(pki.tls_section("none"))),
            ]
            .join("\n")
        });

    let script = support::test_file("paho_transports_e2e.py");
    let out = run(
        Command::new("python3")
            .arg(script)
            .args([tls, mtls, ws, wss].map(|p| p.to_string()))
            .args([&pki.ca_cert, &good.cert, &good.key, &rogue.cert, &rogue.key]),
        Duration::from_secs(120),
    );
    assert!(out.contains("paho transports ok"), "{out}");

    // Both refused clients left a line naming the mTLS listener and the failed TLS handshake.
    let mtls_name = format!("listener=tls://127.0.0.1:{mtls}");
    broker.wait_log(&["closing connection", "TLS handshake", &mtls_name]);
    let log = broker.log();
    let refusals = log
        .lines()
        .filter(|l| {
            l.contains("closing connection")
                && l.contains("TLS handshake")
                && l.contains(&mtls_name)
        })
        .count();
    assert!(
        refusals >= 2,
        "expected a refused handshake per rejected client:\n{log}"
    );
    // Nothing was refused on the other listeners.
    for (kind, port) in [("tls", tls), ("ws", ws), ("wss", wss)] {
        let name = format!("listener={kind}://127.0.0.1:{port}");
        assert!(
            !log.lines()
                .any(|l| l.contains("closing connection") && l.contains(&name)),
            "a connection to the {kind} listener was refused:\n{log}"
        );
    }
}
