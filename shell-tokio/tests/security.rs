//! Security end to end, through the real `cicada` binary: password and JWT authentication with
//! Eclipse Mosquitto's clients (0x86 for v5, 0x04 for 3.1.1), x509 identities on an mTLS
//! listener, ACL denials on publish and subscribe, a flooding client throttled while another keeps
//! its latency, a connect storm from one address refused, and a SIGHUP reload of the password,
//! ACL and ban files that disconnects only the clients no longer allowed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cicada_engine::codec::{Delivery, Packet, ProtocolVersion, Publish, ReasonCode, TopicName};
use support::{attempt, connect_packet, Broker, Raw};

/// `cicada passwd -b [-c] FILE USER PASSWORD`.
fn passwd(file: &Path, user: &str, password: &str, create: bool) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cicada"));
    cmd.args(["passwd", "-b"]);
    if create {
        cmd.arg("-c");
    }
    cmd.arg(file).args([user, password]);
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(60));
    assert!(ok, "cicada passwd failed: {out}");
}

/// A broker with `config` (TOML, memory storage, no `$SYS`) on a loopback port.
fn broker(dir: &Path, config: &str) -> Broker {
    Broker::with_listeners::<0>(dir, |[]| config.to_string()).0
}

/// `mosquitto_pub` of `message` on `t` to `port` with `args`; whether it succeeded, and what it
/// printed.
fn mosquitto_pub(port: u16, message: &str, args: &[&str]) -> (bool, String) {
    support::mosquitto_pub(port, "t", message, args)
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("utf-8 path"))
}

#[test]
fn passwords_are_checked_and_a_wrong_one_gets_0x86_or_0x04() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("passwd");
    passwd(&file, "alice", "s3cret", true);
    let b = broker(
        dir.path(),
        &format!("[auth.password]\nfile = {}\n", quoted(&file)),
    );
    for version in ["mqttv5", "mqttv311"] {
        let (ok, out) = mosquitto_pub(b.port, "x", &["-V", version, "-u", "alice", "-P", "s3cret"]);
        assert!(ok, "{version}: the right password is let in: {out}");
        let (ok, out) = mosquitto_pub(b.port, "x", &["-V", version, "-u", "alice", "-P", "wrong"]);
        assert!(!ok, "{version}: a wrong password is refused");
        assert!(
            out.to_lowercase().contains("bad user name or password"),
            "{version}: {out}"
        );
        // A user nobody knows is refused the same way.
        let (ok, out) = mosquitto_pub(b.port, "x", &["-V", version, "-u", "mallory", "-P", "x"]);
        assert!(
            !ok && out.to_lowercase().contains("bad user name or password"),
            "{out}"
        );
    }
    b.wait_log(&["authentication failed", "wrong password for user \"alice\""]);
}

fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("token")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn a_jwt_is_checked_and_an_expired_one_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "a test secret of thirty-two bytes").expect("write");
    let acl = dir.path().join("acl");
    // The claim from the token decides what the client may do.
    std::fs::write(
        &acl,
        "allow claim \"role\" \"writer\" publish \"t\"\nallow all subscribe \"#\"\n",
    )
    .expect("write");
    let b = broker(
        dir.path(),
        &format!(
            "[auth.jwt]\nalgorithms = [\"HS256\"]\nsecret_file = {}\naudience = \"cicada\"\n\
             [acl]\nfile = {}\n",
            quoted(&secret),
            quoted(&acl)
        ),
    );
    let key = b"a test secret of thirty-two bytes";
    let now = unix_now();
    let valid = hs256(
        key,
        &serde_json::json!({"sub": "dev-1", "aud": "cicada", "exp": now + 600, "role": "writer"}),
    );
    let expired = hs256(
        key,
        &serde_json::json!({"sub": "dev-1", "aud": "cicada", "exp": now - 3600, "role": "writer"}),
    );
    let reader = hs256(
        key,
        &serde_json::json!({"sub": "dev-2", "aud": "cicada", "exp": now + 600, "role": "reader"}),
    );
    let (ok, out) = mosquitto_pub(
        b.port,
        "x",
        &["-V", "mqttv5", "-q", "1", "-u", "any", "-P", &valid],
    );
    assert!(ok, "a valid token is let in and may publish: {out}");
    let (ok, out) = mosquitto_pub(b.port, "x", &["-V", "mqttv5", "-u", "any", "-P", &expired]);
    assert!(
        !ok && out.to_lowercase().contains("bad user name or password"),
        "an expired token is refused: {out}"
    );
    b.wait_log(&["JWT refused", "expired"]);
    let (_, out) = mosquitto_pub(
        b.port,
        "x",
        &["-V", "mqttv5", "-q", "1", "-u", "any", "-P", &reader],
    );
    assert!(
        out.to_lowercase().contains("not authorized"),
        "a token without the claim may not publish: {out}"
    );
}

#[test]
fn x509_identities_authenticate_and_clients_without_certificates_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pki = cicada_transports::testing::TestPki::generate(dir.path());
    let tls = pki.tls_section("optional");
    let client = pki.client("device-9");
    let (b, [port]) = Broker::with_listeners(dir.path(), |[port]| {
        format!(
            "[auth]\nproviders = [\"x509\"]\n\
             [[listener]]\nkind = \"tls\"\nbind = \"127.0.0.1:{port}\"\nallow_anonymous = false\n{tls}"
        )
    });
    let base = |cert: bool| {
        let mut args = vec![
            "-h".to_string(),
            "localhost".to_string(),
            "-p".to_string(),
            port.to_string(),
            "--cafile".to_string(),
            pki.ca_cert.display().to_string(),
            "-t".to_string(),
            "t".to_string(),
            "-m".to_string(),
            "x".to_string(),
            "-V".to_string(),
            "mqttv5".to_string(),
        ];
        if cert {
            args.extend([
                "--cert".to_string(),
                client.cert.display().to_string(),
                "--key".to_string(),
                client.key.display().to_string(),
            ]);
        }
        args
    };
    let (ok, out) = attempt(
        Command::new("mosquitto_pub").args(base(true)),
        Duration::from_secs(10),
    );
    assert!(ok, "a client certificate proves who the client is: {out}");
    b.wait_log(&["client connected", "listener"]);
    let (ok, out) = attempt(
        Command::new("mosquitto_pub").args(base(false)),
        Duration::from_secs(10),
    );
    assert!(
        !ok && out.to_lowercase().contains("not authorized"),
        "no certificate, no anonymous access: {out}"
    );
    b.wait_log(&["authentication failed", "does not allow anonymous"]);
}

const ACL: &str = "allow all subscribe \"public/#\"\nallow user \"writer\" publish \"public/#\"\n";

#[test]
fn the_acl_denies_publish_and_subscribe_as_mosquitto_clients_see_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).expect("write");
    let b = broker(dir.path(), &format!("[acl]\nfile = {}\n", quoted(&acl)));
    let port = b.port.to_string();
    // An anonymous client on loopback may subscribe to public/#, not to private/#.
    let (_, out) = attempt(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-t",
            "private/#",
            "-C",
            "1",
            "-W",
            "2",
        ]),
        Duration::from_secs(10),
    );
    assert!(out.to_lowercase().contains("denied"), "{out}");
    // It may not publish anywhere: v5 QoS 1 hears 0x87.
    let (_, out) = mosquitto_pub(b.port, "x", &["-V", "mqttv5", "-q", "1", "-t", "public/x"]);
    assert!(out.to_lowercase().contains("not authorized"), "{out}");
    b.wait_log(&["refused", "PublishDenied"]);
    b.wait_log(&["refused", "SubscribeDenied"]);
}

fn publish_packet(topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        delivery: Delivery::AtMostOnce,
        retain: false,
        topic: TopicName::new(topic.to_string()).expect("topic"),
        properties: Default::default(),
        payload: bytes::Bytes::copy_from_slice(payload),
    })
}

fn subscribe(raw: &mut Raw, filter: &str) {
    use cicada_engine::codec::{PacketId, Subscribe, Subscription, SubscriptionOptions};
    raw.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("id"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: cicada_engine::codec::TopicFilter::new(filter.to_string()).expect("filter"),
            options: SubscriptionOptions::default(),
        }],
    }));
    assert!(matches!(raw.recv(), Some(Packet::SubAck(_))));
}

#[test]
fn a_flood_is_throttled_while_another_client_keeps_its_latency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = broker(
        dir.path(),
        "[quotas]\npublish_messages_per_sec = 500\npublish_messages_burst = 500\n",
    );
    let v5 = ProtocolVersion::V5;
    let (mut counter, _) = Raw::session(b.port, connect_packet("counter", v5, 60));
    subscribe(&mut counter, "flood");
    let window = Duration::from_secs(2);
    let counting = std::thread::spawn(move || {
        // What reaches the flood's subscriber during the window.
        let started = Instant::now();
        let mut delivered = 0u64;
        counter
            .stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        while started.elapsed() < window {
            if let Some(Packet::Publish(_)) = counter.recv() {
                delivered += 1;
            }
        }
        delivered
    });
    let (mut flood, _) = Raw::session(b.port, connect_packet("flood", v5, 60));
    // Once TCP pushes back (the broker stopped reading), a write blocks; give up then.
    flood
        .stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && flood.try_send(&publish_packet("flood", b"0123456789"))
            {
                sent += 1;
            }
            sent
        })
    };
    // Meanwhile a well-behaved client measures its round trips.
    let (mut probe, _) = Raw::session(b.port, connect_packet("probe", v5, 60));
    subscribe(&mut probe, "probe");
    let mut rtts = Vec::new();
    let started = Instant::now();
    while started.elapsed() < window {
        let t = Instant::now();
        probe.send(&publish_packet("probe", b"ping"));
        match probe.recv() {
            Some(Packet::Publish(_)) => rtts.push(t.elapsed()),
            other => panic!("probe got {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed();
    let sent = flooding.join().expect("flood thread");
    let delivered = counting.join().expect("counter thread");
    rtts.sort();
    let p99 = rtts[rtts.len() * 99 / 100];
    let allowed = 500 + 500 * (elapsed.as_secs_f64() + 1.0) as u64;
    eprintln!(
        "flood: {sent} written, {delivered} delivered in {elapsed:?} (limit 500/s); probe p99 {p99:?} over {} round trips",
        rtts.len()
    );
    assert!(
        delivered <= allowed,
        "the flood got {delivered}, more than {allowed}"
    );
    assert!(
        delivered >= 500,
        "the flood still gets its rate: {delivered}"
    );
    assert!(
        p99 < Duration::from_millis(50),
        "the other client kept its latency: p99 {p99:?}"
    );
    b.wait_log(&["refused", "Throttled"]);
}

#[test]
fn a_connect_storm_from_one_address_is_refused_with_0x9f() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = broker(
        dir.path(),
        "[quotas]\nconnect_rate_per_address = 5\nconnect_burst_per_address = 5\n",
    );
    let mut refused = 0;
    let mut admitted = 0;
    for i in 0..30 {
        let (_raw, ack) = Raw::session(
            b.port,
            connect_packet(&format!("storm-{i}"), ProtocolVersion::V5, 60),
        );
        match ack {
            Packet::ConnAck(a) if a.reason == ReasonCode::Success => admitted += 1,
            Packet::ConnAck(a) if a.reason == ReasonCode::ConnectionRateExceeded => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((5..=10).contains(&admitted), "admitted {admitted}");
    assert_eq!(admitted + refused, 30);
    b.wait_log(&["refused", "ConnectRateExceeded"]);
}

#[cfg(unix)]
#[test]
fn sighup_reloads_passwords_acl_and_bans_disconnecting_only_who_lost_access() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("passwd");
    passwd(&file, "keep", "k", true);
    passwd(&file, "gone", "g", false);
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "allow all subscribe \"#\"\nallow all publish \"#\"\n").expect("acl");
    let bans: PathBuf = dir.path().join("bans");
    std::fs::write(&bans, "").expect("bans");
    let b = broker(
        dir.path(),
        &format!(
            "[auth.password]\nfile = {}\n[acl]\nfile = {}\n[bans]\nfile = {}\n",
            quoted(&file),
            quoted(&acl),
            quoted(&bans)
        ),
    );
    let v5 = ProtocolVersion::V5;
    let login = |id: &str, user: &str, password: &str| {
        let mut c = connect_packet(id, v5, 60);
        c.username = Some(user.into());
        c.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        let (raw, ack) = Raw::session(b.port, c);
        assert!(
            matches!(ack, Packet::ConnAck(ref a) if a.reason == ReasonCode::Success),
            "{ack:?}"
        );
        raw
    };
    let mut keep = login("keeper", "keep", "k");
    subscribe(&mut keep, "news/#");
    let mut gone = login("goner", "gone", "g");
    let mut banned = login("banned-1", "keep", "k");

    // `gone` leaves the password file, `banned-*` is banned, news/# is no longer allowed.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cicada"));
    cmd.args(["passwd", "-D"]).arg(&file).arg("gone");
    let (ok, out) = attempt(&mut cmd, Duration::from_secs(30));
    assert!(ok, "{out}");
    std::fs::write(&bans, "client \"banned-*\"\n").expect("bans");
    std::fs::write(
        &acl,
        "deny all subscribe \"news/#\"\nallow all subscribe \"#\"\nallow all publish \"#\"\n",
    )
    .expect("acl");
    let status = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    match gone.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::NotAuthorized),
        other => panic!("the removed user is disconnected, got {other:?}"),
    }
    match banned.recv() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::AdministrativeAction),
        other => panic!("the banned client is disconnected, got {other:?}"),
    }
    b.wait_log(&["SubscriptionRevoked", "news/#"]);
    // The keeper stays connected, without news.
    let mut publisher = login("publisher", "keep", "k");
    publisher.send(&publish_packet("news/1", b"n"));
    std::thread::sleep(Duration::from_millis(200));
    keep.send(&Packet::PingReq);
    assert_eq!(
        keep.recv(),
        Some(Packet::PingResp),
        "still connected, no news delivered"
    );
}

#[test]
fn tenants_on_their_own_listeners_do_not_see_each_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (b, [acme, globex]) = Broker::with_listeners(dir.path(), |[acme, globex]| {
        format!(
            "[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:{acme}\"\nname = \"acme\"\n\
             [[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:{globex}\"\nname = \"globex\"\n\
             [[tenant]]\nname = \"acme\"\nlisteners = [\"acme\"]\n\
             [[tenant]]\nname = \"globex\"\nlisteners = [\"globex\"]\n"
        )
    });
    let sub = |port: u16, topic: &str| {
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-C",
                "1",
                "-W",
                "5",
                "-v",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (installed by the test command)")
    };
    let acme_sub = sub(acme, "t");
    let operator = sub(b.port, "acme/#");
    // Wait until both subscriptions are in place.
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.log().matches("client connected").count() < 2 {
        assert!(Instant::now() < deadline, "subscribers did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let publish = |port: u16, payload: &str| {
        let (ok, out) = mosquitto_pub(port, payload, &[]);
        assert!(ok, "{out}");
    };
    publish(globex, "from globex");
    publish(acme, "from acme");
    let acme_got = acme_sub.wait_with_output().expect("output");
    assert_eq!(
        String::from_utf8_lossy(&acme_got.stdout).trim(),
        "t from acme"
    );
    let operator_got = operator.wait_with_output().expect("output");
    assert_eq!(
        String::from_utf8_lossy(&operator_got.stdout).trim(),
        "acme/t from acme",
        "outside every tenant, the mount point shows"
    );
}
