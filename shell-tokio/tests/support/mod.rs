//! Starting the real `cicada` binary on a free loopback port, and a minimal raw MQTT client for the cases
//! third-party clients cannot produce (malformed bytes, silence, thousands of connections).
//!
//! shell-monoio's tests include the same test files (`#[path]`), so there the broker is
//! `cicada-uring`: every suite that applies runs on both shells.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cicada_engine::codec::{Connect, Decoded, Decoder, Packet, ProtocolVersion};

/// The broker under test: `cicada-uring` in shell-monoio's tests, `cicada` in shell-tokio's.
pub const BINARY: &str = match (
    option_env!("CARGO_BIN_EXE_cicada-uring"),
    option_env!("CARGO_BIN_EXE_cicada"),
) {
    (Some(uring), _) => uring,
    (None, Some(cicada)) => cicada,
    (None, None) => panic!("built outside shell-tokio and shell-monoio"),
};

/// Whether the broker under test is `cicada-uring`.
pub fn is_uring() -> bool {
    option_env!("CARGO_BIN_EXE_cicada-uring").is_some()
}

/// A file under shell-tokio's `tests/` directory (scripts), from either crate's tests.
pub fn test_file(name: &str) -> String {
    format!("{}/../shell-tokio/tests/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A running broker, killed when dropped.
pub struct Broker {
    pub port: u16,
    child: Child,
    pub data_dir: std::path::PathBuf,
}

impl Broker {
    /// Starts `cicada` with `extra` arguments and waits until it accepts connections.
    pub fn start(extra: &[&str]) -> Broker {
        let port = free_port();
        let data_dir = std::env::temp_dir().join(format!("cicada-e2e-{port}"));
        // A leftover of an earlier run on the same port must not leak state into this one.
        let _ = std::fs::remove_dir_all(&data_dir);
        Broker::start_at(port, data_dir, extra)
    }

    /// Starts `cicada` on `port` with `data_dir` (kept as it is: a restart).
    pub fn start_at(port: u16, data_dir: std::path::PathBuf, extra: &[&str]) -> Broker {
        Broker::try_start_at(port, data_dir, extra).unwrap_or_else(|log| {
            panic!("cicada exited at start:\n{log}");
        })
    }

    /// Starts `cicada` with `extra` arguments; if it exits before listening (a port taken by a
    /// parallel test, say), returns what it logged.
    pub fn try_start(extra: &[&str]) -> Result<Broker, String> {
        let port = free_port();
        let data_dir = std::env::temp_dir().join(format!("cicada-e2e-{port}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        Broker::try_start_at(port, data_dir, extra)
    }

    fn try_start_at(
        port: u16,
        data_dir: std::path::PathBuf,
        extra: &[&str],
    ) -> Result<Broker, String> {
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(BINARY)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--log-level", "debug"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cicada");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Ready means this broker logged it, not just that something answers on the port: a
        // parallel test may hold a port this one was given and failed to bind.
        let ready = |log: &str| {
            log.contains("cicada_shell_tokio::server: ready") || log.contains("cicada_uring: ready")
        };
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if child.try_wait().expect("wait").is_some() {
                let _ = std::fs::remove_file(&log_path);
                return Err(log);
            }
            if ready(&log) && TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cicada did not start listening:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Broker {
            port,
            child,
            data_dir,
        })
    }

    /// Picks `N` free ports, writes a config (memory storage, no `$SYS`) with the `[[listener]]`
    /// entries `listeners` makes of them into `dir`, and starts the broker with it. Free ports are
    /// only free until bound: if a parallel test took one first, the broker exits and this tries
    /// again with others.
    pub fn with_listeners<const N: usize>(
        dir: &std::path::Path,
        listeners: impl Fn([u16; N]) -> String,
    ) -> (Broker, [u16; N]) {
        let path = dir.join("cicada.toml");
        let mut last = String::new();
        for _ in 0..3 {
            let ports = std::array::from_fn(|_| free_port());
            let text = format!(
                "[storage]\nbackend = \"memory\"\n[sys]\ninterval_secs = 0\n{}",
                listeners(ports)
            );
            std::fs::write(&path, text).expect("write config");
            match Broker::try_start(&["--config", path.to_str().expect("utf-8 path")]) {
                Ok(broker) => return (broker, ports),
                Err(log) => last = log,
            }
        }
        panic!("cicada did not start three times; last log:\n{last}");
    }

    /// The broker's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the broker logged so far (debug level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// Waits until the log has a line containing every one of `parts`; returns that line.
    pub fn wait_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self
                .log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (a crash) and returns its data directory, left in place.
    pub fn kill(mut self) -> std::path::PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.data_dir)
    }

    /// Sends SIGTERM and waits for the exit status; the data directory is left in place (a
    /// restart may follow) and returned with the status.
    pub fn terminate_keeping_data(mut self) -> (std::process::ExitStatus, std::path::PathBuf) {
        let status = self.stop();
        (status, std::mem::take(&mut self.data_dir))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "cicada did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.data_dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            let _ = std::fs::remove_file(self.data_dir.with_extension("log"));
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A blocking MQTT connection speaking through the engine's codec.
pub struct Raw {
    pub stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl Raw {
    pub fn connect(port: u16, version: ProtocolVersion) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut decoder = Decoder::new(1 << 20);
        decoder.set_version(version);
        Raw {
            stream,
            decoder,
            buf: BytesMut::new(),
            version,
        }
    }

    /// Connects and completes CONNECT/CONNACK with `connect`.
    pub fn session(port: u16, connect: Connect) -> (Raw, Packet) {
        let mut raw = Raw::connect(port, connect.protocol);
        raw.send(&Packet::Connect(Box::new(connect)));
        let ack = raw.recv().expect("CONNACK");
        (raw, ack)
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.stream.write_all(&out).expect("write");
    }

    /// Sends a packet; `false` if the connection is gone.
    pub fn try_send(&mut self, packet: &Packet) -> bool {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.stream.write_all(&out).is_ok()
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next packet, or `None` if the broker closed the connection (or nothing came in 5 s).
    pub fn recv(&mut self) -> Option<Packet> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Decoded::Packet(p)) => return Some(p),
                Ok(Decoded::Incomplete { .. }) => {}
                Err(e) => panic!("broker sent a malformed packet: {e}"),
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// A CONNECT with clean start and the given keep alive.
pub fn connect_packet(client_id: &str, version: ProtocolVersion, keep_alive: u16) -> Connect {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive,
        properties: Default::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }
}

/// Runs a command with a time limit (killed after it); whether it succeeded, and its stdout
/// followed by its stderr.
pub fn attempt(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let (ok, stdout, stderr) = finish(cmd, limit);
    (ok, format!("{stdout}{stderr}"))
}

/// Runs a command to completion with a time limit; returns its stdout.
pub fn run(cmd: &mut Command, limit: Duration) -> String {
    let (ok, stdout, stderr) = finish(cmd, limit);
    assert!(ok, "{cmd:?} failed: {stdout}{stderr}");
    stdout
}

/// Runs `cmd`, killing it after `limit`: success, stdout, stderr.
fn finish(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (the test command installs it)"));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.1 request to `127.0.0.1:port` (std only, `Connection: close`): the status code and
/// the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    http_as(port, method, path, bearer.as_deref(), body)
}

/// [`http`] with `authorization` as the whole `Authorization` header value, if any.
pub fn http_as(
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

/// The body of a chunked response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// `mosquitto_pub` of `message` on `topic` to `port` with `args` (10 s at most): whether it
/// succeeded, and what it printed.
pub fn mosquitto_pub(port: u16, topic: &str, message: &str, args: &[&str]) -> (bool, String) {
    attempt(
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                topic,
                "-m",
                message,
            ])
            .args(args),
        Duration::from_secs(10),
    )
}
