//! `cicada`: the Cicada MQTT broker on tokio.
//!
//! The shell owns sockets, timers and storage, and drives the sans-IO [`cicada_engine::Engine`];
//! it holds no protocol rule.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use cicada_shell_tokio::config;
use cicada_shell_tokio::{auth, init_logging, otlp, passwd, server};

/// The Cicada MQTT broker.
#[derive(Debug, Parser)]
#[command(name = "cicada", version, about)]
struct Cli {
    #[command(flatten)]
    source: config::Source,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Creates or changes a user's argon2id password in FILE (for `auth.password.file`), or
    /// deletes the user; like mosquitto_passwd. Without -b the password is prompted for twice,
    /// or read from the first line of standard input when that is not a terminal.
    Passwd {
        /// Create FILE, replacing it if it exists (without -c, FILE must exist).
        #[arg(short = 'c')]
        create: bool,
        /// Batch mode: take PASSWORD from the command line (it lands in the shell history).
        #[arg(short = 'b', requires = "password")]
        batch: bool,
        /// Delete USER from FILE.
        #[arg(short = 'D', conflicts_with_all = ["create", "batch"])]
        delete: bool,
        /// The password file.
        file: PathBuf,
        /// The user name (no `:` or control characters, not starting with `#`).
        user: String,
        /// The password, with -b only.
        #[arg(requires = "batch")]
        password: Option<String>,
    },
    /// Prints a SCRAM-SHA-256 credentials line for NAME (for `auth.scram_credentials`); the password
    /// is read from the first line of standard input, so it stays out of the shell history.
    ScramUser {
        /// The user name (no `:`).
        name: String,
        /// PBKDF2 iterations (at least 4096).
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
}

/// `cicada scram-user`: derives and prints a credentials line.
fn scram_user(name: &str, iterations: u32) -> ExitCode {
    if name.is_empty() || name.contains(':') {
        eprintln!("cicada: the user name must be non-empty and without `:`");
        return ExitCode::from(2);
    }
    let Some(iterations) =
        std::num::NonZeroU32::new(iterations).filter(|i| i.get() >= cicada_scram::MIN_ITERATIONS)
    else {
        eprintln!("cicada: --iterations must be at least 4096 (RFC 7677)");
        return ExitCode::from(2);
    };
    let mut password = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut password) {
        eprintln!("cicada: cannot read the password from standard input: {e}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("cicada: give the password on standard input, e.g. `echo secret | cicada scram-user alice`");
        return ExitCode::from(2);
    }
    let salt = match auth::salt() {
        Ok(salt) => salt,
        Err(e) => {
            eprintln!("cicada: {e}");
            return ExitCode::FAILURE;
        }
    };
    let creds = cicada_scram::StoredCredentials::derive(password, &salt, iterations);
    println!("{}", cicada_scram::CredentialsFile::line(name, &creds));
    ExitCode::SUCCESS
}

/// `cicada passwd`: sets USER's password in FILE, or deletes USER (-D), rewriting FILE atomically.
///
/// Exit status 2 means the request cannot be carried out as given (a bad user name, an empty or
/// mistyped password, FILE missing without -c, -D for an absent user); 1 means reading or writing
/// failed, FILE is malformed, or hashing failed.
fn passwd(
    create: bool,
    batch: bool,
    delete: bool,
    path: &Path,
    user: &str,
    password: Option<&str>,
) -> ExitCode {
    let fail = |code: u8, message: &dyn std::fmt::Display| {
        eprintln!("cicada: {message}");
        ExitCode::from(code)
    };
    if let Err(problem) = passwd::check_user(user) {
        return fail(2, &problem);
    }
    let mut file = if create {
        passwd::PasswordFile::default()
    } else {
        match passwd::PasswordFile::load(path) {
            Ok(file) => file,
            Err(e) if e.is_not_found() => {
                let message = format!("{} does not exist; add -c to create it", path.display());
                return fail(2, &message);
            }
            Err(e) => return fail(1, &e),
        }
    };
    if delete {
        if !file.remove(user) {
            let message = format!("user {user:?} is not in {}", path.display());
            return fail(2, &message);
        }
    } else {
        let password = match password.filter(|_| batch) {
            Some(password) => {
                eprintln!(
                    "cicada: warning: a password given with -b lands in the shell history and \
                     the process list; leave out -b to be prompted"
                );
                password.to_owned()
            }
            None => match passwd::read_new_password() {
                Ok(password) => password,
                Err(e @ passwd::PasswdError::PasswordsDiffer) => return fail(2, &e),
                Err(e) => return fail(1, &e),
            },
        };
        match file.set_password(user, password.as_bytes()) {
            Ok(()) => {}
            Err(e @ (passwd::PasswdError::EmptyPassword | passwd::PasswdError::User(_))) => {
                return fail(2, &e)
            }
            Err(e) => return fail(1, &e),
        }
    }
    match passwd::save(path, &file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &e),
    }
}

fn main() -> ExitCode {
    // ring is the broker's one TLS crypto provider. The HTTP clients (webhooks, the OTLP exporter)
    // share a reqwest built without one, so it is installed for the whole process here; `Err` means
    // one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::ScramUser { name, iterations }) => return scram_user(&name, iterations),
        Some(Command::Passwd {
            create,
            batch,
            delete,
            file,
            user,
            password,
        }) => return passwd(create, batch, delete, &file, &user, password.as_deref()),
        None => {}
    }
    let source = cli.source.clone();
    let settings = source.settings();
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cicada: {e}");
            return ExitCode::from(2);
        }
    };
    let (exporter, tracer) = match settings.otlp.as_ref().map(otlp::Exporter::start) {
        Some(Ok((exporter, tracer))) => (Some(exporter), Some(tracer)),
        Some(Err(e)) => {
            eprintln!("cicada: {e}");
            return ExitCode::from(2);
        }
        None => (None, None),
    };
    let log = init_logging(settings.log_format, &settings.log_level, tracer);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cicada: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(server::run(settings, source, log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("cicada: {e}");
            ExitCode::FAILURE
        }
    };
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    code
}
