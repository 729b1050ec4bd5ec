//! End to end over TLS and mutual TLS with Eclipse Mosquitto's command-line clients (Debian
//! `mosquitto-clients`, installed by the test command): the server certificate checked against
//! the CA with `--cafile`, client certificates with `--cert`/`--key`, and clients without a
//! trusted certificate refused.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cicada_transports::testing::{ClientCert, TestPki};
use support::{run, Broker};

/// A broker with a TLS listener (no client certificates) and an mTLS one (client certificates
/// required), and the PKI behind them.
struct TlsBroker {
    broker: Broker,
    pki: TestPki,
    tls: u16,
    mtls: u16,
    // Last: the PKI files outlive the broker that reads them.
    _dir: tempfile::TempDir,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::generate(dir.path());
        let section = |client_auth: &str| pki.tls_section(client_auth);
        let (broker, [tls, mtls]) = Broker::with_listeners(dir.path(), |[tls, mtls]| {
            format!(
                "[[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{tls}\"\n{}\n\
                 [[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{mtls}\"\n{}",
                section("none"),
                section("required"),
            )
        });
        TlsBroker {
            broker,
            pki,
            tls,
            mtls,
            _dir: dir,
        }
    }

    /// Connection arguments for `port`: by the name on the server certificate, trusting the CA,
    /// with `cert` as client certificate if given.
    fn args(&self, port: u16, cert: Option<&ClientCert>) -> Vec<String> {
        let mut args = vec![
            "-h".to_string(),
            "localhost".to_string(),
            "-p".to_string(),
            port.to_string(),
            "--cafile".to_string(),
            path(&self.pki.ca_cert),
        ];
        if let Some(cert) = cert {
            args.extend([
                "--cert".to_string(),
                path(&cert.cert),
                "--key".to_string(),
                path(&cert.key),
            ]);
        }
        args
    }

    /// Publishes a retained QoS 1 message with `mosquitto_pub`.
    fn publish_retained(
        &self,
        port: u16,
        cert: Option<&ClientCert>,
        version: &str,
        topic: &str,
        payload: &str,
    ) {
        run(
            Command::new("mosquitto_pub")
                .args(self.args(port, cert))
                .args(["-V", version, "-q", "1", "-r", "-t", topic, "-m", payload]),
            Duration::from_secs(15),
        );
    }

    /// Subscribes at QoS 1 with `mosquitto_sub` and returns the first message (the retained one)
    /// as `topic payload`.
    fn first_message(
        &self,
        port: u16,
        cert: Option<&ClientCert>,
        version: &str,
        topic: &str,
    ) -> String {
        let out = run(
            Command::new("mosquitto_sub")
                .args(self.args(port, cert))
                .args(["-V", version, "-q", "1", "-t", topic, "-v"])
                .args(["-C", "1", "-W", "10"]),
            Duration::from_secs(15),
        );
        out.trim_end().to_string()
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_str().expect("a UTF-8 temp path").to_string()
}

/// Runs `cmd` to completion (at most 15 s) whatever its exit status.
fn output_of(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the test command installs it)"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} still running after 15 s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn tls_v5_and_v311_with_the_server_certificate_checked() {
    let b = TlsBroker::start();
    for (pub_version, sub_version) in [
        ("mqttv5", "mqttv5"),
        ("mqttv311", "mqttv311"),
        ("mqttv5", "mqttv311"),
        ("mqttv311", "mqttv5"),
    ] {
        let topic = format!("tls/{pub_version}-to-{sub_version}");
        b.publish_retained(b.tls, None, pub_version, &topic, "over tls");
        assert_eq!(
            b.first_message(b.tls, None, sub_version, &topic),
            format!("{topic} over tls")
        );
    }
    // The publisher and the subscriber were one connection each; none was refused.
    assert!(
        !b.broker.log().contains("closing connection"),
        "{}",
        b.broker.log()
    );
}

#[test]
fn mtls_with_a_client_certificate_signed_by_the_ca() {
    let b = TlsBroker::start();
    let alice = b.pki.client("alice");
    for version in ["mqttv5", "mqttv311"] {
        let topic = format!("mtls/{version}");
        b.publish_retained(b.mtls, Some(&alice), version, &topic, "mutual");
        assert_eq!(
            b.first_message(b.mtls, Some(&alice), version, &topic),
            format!("{topic} mutual")
        );
    }
    // The broker saw the certificate's identity.
    b.broker.wait_log(&["accepted", "identity=Some(\"alice\")"]);
    // A message published over mTLS reaches a subscriber on the plain TLS listener.
    b.publish_retained(b.mtls, Some(&alice), "mqttv5", "mtls/cross", "across");
    assert_eq!(
        b.first_message(b.tls, None, "mqttv311", "mtls/cross"),
        "mtls/cross across"
    );
}

#[test]
fn mtls_refuses_clients_without_a_trusted_certificate() {
    let b = TlsBroker::start();
    let mallory = b.pki.untrusted_client("mallory");
    let mtls_name = format!("listener=tls://127.0.0.1:{}", b.mtls);
    for (cert, why) in [
        (None, "peer sent no certificates"),
        (Some(&mallory), "invalid peer certificate"),
    ] {
        let out = output_of(
            Command::new("mosquitto_pub")
                .args(b.args(b.mtls, cert))
                .args(["-q", "1", "-r", "-t", "mtls/intruder", "-m", "let me in"]),
        );
        assert!(
            !out.status.success(),
            "mosquitto_pub with {cert:?} got in: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        b.broker
            .wait_log(&["closing connection", "TLS handshake", why, &mtls_name]);
    }
    // Nothing was published: a trusted subscriber finds no retained message (it exits after 2 s).
    let alice = b.pki.client("alice");
    let out = output_of(
        Command::new("mosquitto_sub")
            .args(b.args(b.mtls, Some(&alice)))
            .args(["-t", "mtls/intruder", "-W", "2", "--retained-only"]),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The only MQTT session on the mTLS listener was that subscriber's.
    b.broker.wait_log(&["client connected", &mtls_name]);
    let log = b.broker.log();
    let sessions = log
        .lines()
        .filter(|l| l.contains("client connected") && l.contains(&mtls_name))
        .count();
    assert_eq!(sessions, 1, "{log}");
}
