//! `cicada-cli`: publish and subscribe over MQTT from the command line, over every transport the
//! broker offers (TCP, TLS, WebSocket, WSS and QUIC).
//!
//! The binary only parses arguments and calls [`run`]; tests in other crates call [`parse`] and
//! [`run`] (or [`run_with_input`]) in-process, and [`session::Session`] directly for finer
//! control.
//!
//! ```text
//! cicada-cli pub --url quic://localhost -t a/b -m hello -q 1
//! cicada-cli sub --url wss://localhost/mqtt --cafile ca.pem -t 'a/#' -v -C 10
//! ```

pub mod session;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cicada_engine::codec::{ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
use cicada_transports::client::{self, ClientError, ClientTls, Target};
use clap::{ArgGroup, Args, Parser, Subcommand};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use session::{Options, Session};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "cicada-cli",
    version,
    about = "Publish and subscribe over MQTT: TCP, TLS, WebSocket, WSS and QUIC"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish a message (or one per line of standard input) and exit.
    Pub(PubArgs),
    /// Subscribe and print each message received as a line.
    Sub(SubArgs),
}

/// Where to connect and as whom; shared by `pub` and `sub`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Broker URL: mqtt://HOST[:1883], mqtts://HOST[:8883], ws://HOST[:80][/mqtt],
    /// wss://HOST[:443][/mqtt] or quic://HOST[:14567].
    #[arg(short = 'L', long, value_name = "URL", value_parser = parse_url)]
    pub url: Target,
    /// Client identifier; empty lets the broker assign one.
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub client_id: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// MQTT protocol version: 3.1.1 or 5.
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION", default_value = "5", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// Keep alive in seconds (0: none); PINGREQ goes out after half of it without traffic.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// Seconds to wait for the connection and for each acknowledgement.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// PEM file of the CA certificates that sign the broker's certificate (TLS, WSS, QUIC).
    #[arg(long, value_name = "FILE")]
    pub cafile: Option<PathBuf>,
    /// PEM file with a client certificate chain, for brokers that ask for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// PEM file with the client certificate's private key.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: for testing only.
    #[arg(long)]
    pub insecure: bool,
    /// The name the server certificate must carry, if not the URL's host.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

impl ConnectArgs {
    /// The TLS settings of the connection.
    pub fn tls(&self) -> ClientTls {
        ClientTls {
            ca: self.cafile.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            insecure: self.insecure,
            server_name: self.server_name.clone(),
        }
    }

    /// The CONNECT options, with the given session persistence.
    pub fn options(&self, clean_start: bool, session_expiry: Option<u32>) -> Options {
        Options {
            version: self.version,
            client_id: self.client_id.clone().unwrap_or_default(),
            clean_start,
            keep_alive: self.keep_alive,
            session_expiry,
            username: self.username.clone(),
            password: self.password.clone().map(Bytes::from),
            timeout: self.timeout,
        }
    }
}

/// `cicada-cli pub`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["message", "lines"])))]
pub struct PubArgs {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The topic to publish to.
    #[arg(short = 't', long, value_parser = parse_topic)]
    pub topic: TopicName,
    /// The message to publish.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Publish each line of standard input as a message (blank lines are skipped).
    #[arg(short = 'l', long = "stdin-line")]
    pub lines: bool,
    /// Quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Ask the broker to retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,
    /// Publish the message this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "lines")]
    pub count: u32,
}

/// `cicada-cli sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Where and as whom to connect.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// A topic filter to subscribe to; repeat for several.
    #[arg(short = 't', long = "topic", value_name = "FILTER", required = true, value_parser = parse_filter)]
    pub filters: Vec<TopicFilter>,
    /// Maximum quality of service of the subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value = "0", value_parser = parse_qos)]
    pub qos: QoS,
    /// Exit after this many messages.
    #[arg(short = 'C', long, value_name = "N")]
    pub count: Option<u64>,
    /// Fail if no message arrives for this many seconds.
    #[arg(short = 'W', long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub wait: Option<Duration>,
    /// Print "topic payload" instead of the payload alone.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Keep the session (no clean start): messages sent while away are delivered on return.
    #[arg(short = 'c', long = "persistent", requires = "client_id")]
    pub persistent: bool,
    /// With -c, seconds the broker keeps the session after disconnection (5.0; default: never
    /// expires).
    #[arg(
        short = 'x',
        long = "session-expiry",
        value_name = "SECONDS",
        requires = "persistent"
    )]
    pub session_expiry: Option<u32>,
}

/// Why the command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The transport could not be opened.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// The broker refused the connection.
    #[error("the broker refused the connection: {reason}")]
    Refused {
        /// CONNACK's reason code (3.x return codes mapped to theirs).
        reason: ReasonCode,
    },
    /// The broker refused a publish or a subscription.
    #[error("the broker rejected {what}: {reason}")]
    Rejected {
        /// What was rejected.
        what: String,
        /// The reason code.
        reason: ReasonCode,
    },
    /// The broker ended the connection.
    #[error("the broker closed the connection{}", reason.map(|r| format!(": {r}")).unwrap_or_default())]
    Disconnected {
        /// DISCONNECT's reason code (5.0), if the broker sent one.
        reason: Option<ReasonCode>,
    },
    /// The broker sent something it should not have.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Reading or writing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error("timed out after {}s waiting for {what}", after.as_secs_f64())]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        after: Duration,
    },
}

/// Parses the command line; `args` starts with the program name.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// Runs the command, printing received messages to `out`; `pub -l` reads standard input.
pub async fn run(cli: Cli, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    // Standard input is only read by `pub -l`; creating the handle reads nothing.
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    run_with_input(cli, &mut stdin, out).await
}

/// [`run`] with `input` in place of standard input, for tests and embedding.
pub async fn run_with_input(
    cli: Cli,
    input: &mut (dyn AsyncBufRead + Unpin + Send),
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    match cli.command {
        Command::Pub(args) => publish(&args, input).await,
        Command::Sub(args) => subscribe(&args, out).await,
    }
}

/// Opens the transport and the MQTT session, within the timeout.
async fn open(args: &ConnectArgs, options: &Options) -> Result<Session, CliError> {
    let attempt = async {
        let stream = client::connect(&args.url, &args.tls()).await?;
        Session::connect(stream, options).await
    };
    tokio::time::timeout(args.timeout, attempt)
        .await
        .map_err(|_| CliError::Timeout {
            what: "the connection",
            after: args.timeout,
        })?
}

async fn publish(
    args: &PubArgs,
    input: &mut (dyn AsyncBufRead + Unpin + Send),
) -> Result<(), CliError> {
    let mut session = open(&args.connect, &args.connect.options(true, None)).await?;
    if let Some(message) = &args.message {
        let payload = Bytes::from(message.clone());
        for _ in 0..args.count {
            session
                .publish(&args.topic, payload.clone(), args.qos, args.retain)
                .await?;
        }
    } else {
        let mut lines = input.lines();
        loop {
            // `next_line` and `idle` are both cancel-safe: whichever loses the race loses nothing.
            let line = tokio::select! {
                line = lines.next_line() => line.map_err(|source| CliError::Io {
                    what: "reading standard input",
                    source,
                })?,
                idle = session.idle() => {
                    let Err(e) = idle;
                    return Err(e);
                }
            };
            let Some(line) = line else { break };
            if line.is_empty() {
                continue;
            }
            session
                .publish(&args.topic, Bytes::from(line), args.qos, args.retain)
                .await?;
        }
    }
    session.disconnect().await
}

async fn subscribe(args: &SubArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let expiry = args
        .persistent
        .then(|| args.session_expiry.unwrap_or(u32::MAX));
    let options = args.connect.options(!args.persistent, expiry);
    let mut session = open(&args.connect, &options).await?;
    session.subscribe(&args.filters, args.qos).await?;
    let mut received = 0u64;
    while args.count.is_none_or(|count| received < count) {
        let message = session.next_message(args.wait).await?;
        let payload = String::from_utf8_lossy(&message.payload);
        let written = if args.verbose {
            writeln!(out, "{} {payload}", message.topic)
        } else {
            writeln!(out, "{payload}")
        };
        written
            .and_then(|()| out.flush())
            .map_err(|source| CliError::Io {
                what: "writing output",
                source,
            })?;
        received += 1;
    }
    session.settle().await?;
    session.disconnect().await
}

fn parse_url(url: &str) -> Result<Target, String> {
    Target::parse(url).map_err(|e| e.to_string())
}

fn parse_version(v: &str) -> Result<ProtocolVersion, String> {
    match v.to_ascii_lowercase().trim_start_matches("mqttv") {
        "3.1.1" | "311" | "4" => Ok(ProtocolVersion::V3_1_1),
        "3.1" | "31" | "3" => Ok(ProtocolVersion::V3_1),
        "5" | "5.0" | "50" => Ok(ProtocolVersion::V5),
        _ => Err(format!("{v:?} is not an MQTT version; use 3.1.1 or 5")),
    }
}

fn parse_qos(q: &str) -> Result<QoS, String> {
    q.parse::<u8>()
        .ok()
        .and_then(QoS::from_u8)
        .ok_or_else(|| format!("{q:?} is not a QoS; use 0, 1 or 2"))
}

/// The longest wait accepted (about ten years), so deadlines stay representable.
const MAX_SECONDS: u64 = 315_360_000;

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero() && d.as_secs() <= MAX_SECONDS)
        .ok_or_else(|| format!("{s:?} is not a number of seconds between 0 and {MAX_SECONDS}"))
}

fn parse_topic(t: &str) -> Result<TopicName, String> {
    TopicName::new(t).map_err(|e| format!("{t:?} is not a topic name: {e}"))
}

fn parse_filter(f: &str) -> Result<TopicFilter, String> {
    TopicFilter::new(f).map_err(|e| format!("{f:?} is not a topic filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cicada_transports::Kind;
    use clap::error::ErrorKind;

    fn args(line: &str) -> Result<Cli, clap::Error> {
        parse(std::iter::once("cicada-cli").chain(line.split_whitespace()))
    }

    #[test]
    fn pub_with_every_option() {
        let cli = args(
            "pub --url quic://[::1]:4433 -t a/b -m hi -q 2 -r -i me -u user -P pw -V 3.1.1 \
             --cafile ca.pem --cert c.pem --key k.pem --server-name broker --count 3 -k 10 \
             --timeout 2.5",
        )
        .expect("parses");
        let Command::Pub(p) = cli.command else {
            panic!("not pub")
        };
        assert_eq!(p.connect.url.kind, Kind::Quic);
        assert_eq!(p.connect.url.host, "::1");
        assert_eq!(p.connect.url.port, 4433);
        assert_eq!(p.topic.as_str(), "a/b");
        assert_eq!(p.message.as_deref(), Some("hi"));
        assert_eq!(p.qos, QoS::ExactlyOnce);
        assert!(p.retain);
        assert_eq!(p.count, 3);
        assert_eq!(p.connect.version, ProtocolVersion::V3_1_1);
        assert_eq!(p.connect.keep_alive, 10);
        assert_eq!(p.connect.timeout, Duration::from_millis(2500));
        let tls = p.connect.tls();
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("k.pem")));
        assert_eq!(tls.server_name.as_deref(), Some("broker"));
        assert!(!tls.insecure);
        let options = p.connect.options(true, None);
        assert_eq!(options.client_id, "me");
        assert_eq!(options.username.as_deref(), Some("user"));
        assert_eq!(options.password.as_deref(), Some(&b"pw"[..]));
    }

    #[test]
    fn pub_defaults() {
        let cli = args("pub --url mqtt://localhost -t t -l").expect("parses");
        let Command::Pub(p) = cli.command else {
            panic!("not pub")
        };
        assert!(p.lines);
        assert_eq!(p.qos, QoS::AtMostOnce);
        assert_eq!(p.count, 1);
        assert_eq!(p.connect.version, ProtocolVersion::V5);
        assert_eq!(p.connect.keep_alive, 60);
        assert_eq!(p.connect.timeout, Duration::from_secs(30));
        assert_eq!(p.connect.url.port, 1883);
    }

    #[test]
    fn sub_with_several_filters() {
        let cli = args("sub -L wss://h/ws -t a/# -t +/b -q 1 -C 2 -W 0.5 -v -c -i me --insecure")
            .expect("parses");
        let Command::Sub(s) = cli.command else {
            panic!("not sub")
        };
        let filters: Vec<&str> = s.filters.iter().map(|f| f.as_str()).collect();
        assert_eq!(filters, ["a/#", "+/b"]);
        assert_eq!(s.connect.url.path, "/ws");
        assert_eq!(s.qos, QoS::AtLeastOnce);
        assert_eq!(s.count, Some(2));
        assert_eq!(s.wait, Some(Duration::from_millis(500)));
        assert!(s.verbose && s.persistent && s.connect.insecure);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let kind = |line: &str| args(line).err().map(|e| e.kind());
        // No message source, or two.
        assert_eq!(
            kind("pub --url mqtt://h -t t"),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -m x -l"),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -l --count 2"),
            Some(ErrorKind::ArgumentConflict)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -m x --count 0"),
            Some(ErrorKind::ValueValidation)
        );
        // Wildcards are for filters, not topics.
        assert_eq!(
            kind("pub --url mqtt://h -t a/# -m x"),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -m x -q 3"),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind("pub --url http://h -t t -m x"),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -m x -V 4.0"),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind("pub --url mqtt://h -t t -m x --cert c.pem"),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind("sub --url mqtt://h"),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind("sub --url mqtt://h -t a/#/b"),
            Some(ErrorKind::ValueValidation)
        );
        // A persistent session needs a name to come back to.
        assert_eq!(
            kind("sub --url mqtt://h -t a -c"),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind("sub --url mqtt://h -t a -W 0"),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(kind("sub -t a"), Some(ErrorKind::MissingRequiredArgument));
    }

    #[test]
    fn versions() {
        for (given, want) in [
            ("5", ProtocolVersion::V5),
            ("5.0", ProtocolVersion::V5),
            ("mqttv5", ProtocolVersion::V5),
            ("3.1.1", ProtocolVersion::V3_1_1),
            ("311", ProtocolVersion::V3_1_1),
            ("3.1", ProtocolVersion::V3_1),
        ] {
            assert_eq!(parse_version(given), Ok(want), "{given}");
        }
    }
}
