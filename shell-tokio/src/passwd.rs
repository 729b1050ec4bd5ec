//! The password file (`auth.password.file`): `user:hash` lines with argon2id PHC hashes, managed
//! with `cicada passwd` (like mosquitto_passwd).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Why the file or a hash cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasswdError {
    #[error("cannot read `auth.password.file` {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`auth.password.file` {path}: line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordCheck {
    Match,
    Mismatch,
    UnknownUser,
}

/// The users and their hashes.
#[derive(Debug, Default)]
pub(crate) struct PasswordFile {
    users: BTreeMap<String, String>,
    /// A hash of nothing anyone knows, verified for unknown users so that the time taken does not
    /// tell which users exist.
    decoy: OnceLock<String>,
}

fn argon2() -> Result<Argon2<'static>, PasswdError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| PasswdError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// An argon2id PHC hash of `password` with a fresh random salt.
pub(crate) fn hash_password(password: &[u8]) -> Result<String, PasswdError> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswdError::Hash("the system random number generator failed".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswdError::Hash(e.to_string()))?;
    argon2()?
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswdError::Hash(e.to_string()))
}

/// Whether `user` is a name the file can hold.
pub(crate) fn valid_user(user: &str) -> bool {
    !user.is_empty() && !user.contains(':') && !user.chars().any(char::is_control)
}

impl PasswordFile {
    /// Parses the file's text; errors are (line, message).
    fn parse_text(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut users = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((
                    n,
                    "expected `user:hash`; write lines with `cicada passwd`".into(),
                ));
            };
            if !valid_user(user) {
                return Err((n, format!("{user:?} is not a valid user name (non-empty, no `:` or control characters)")));
            }
            match PasswordHash::new(hash) {
                Ok(h) if h.algorithm.as_str() == "argon2id" => {}
                _ => {
                    return Err((n, format!("the hash of {user:?} is not an argon2id hash; set the password again with `cicada passwd FILE {user}`")))
                }
            }
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err((
                    n,
                    format!("user {user:?} appears twice; keep one line per user"),
                ));
            }
        }
        Ok(PasswordFile {
            users,
            decoy: OnceLock::new(),
        })
    }

    /// Reads the file at `path`.
    pub(crate) fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| PasswdError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PasswordFile::parse_text(&text).map_err(|(line, message)| PasswdError::Syntax {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// How many users there are.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    /// The stored hash of `user` (a reload compares it with the one a connected client proved).
    pub(crate) fn get_hash(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// Sets (or replaces) `user`'s hash.
    pub(crate) fn set(&mut self, user: &str, hash: String) {
        self.users.insert(user.to_string(), hash);
    }

    /// Removes `user`; whether it was there.
    pub(crate) fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    /// Checks `password` for `user`. Slow on purpose (argon2id): call it off the engine task.
    pub(crate) fn verify(&self, user: &str, password: &[u8]) -> PasswordCheck {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => {
                let decoy = self
                    .decoy
                    .get_or_init(|| hash_password(b"no one knows this").unwrap_or_default());
                (decoy.as_str(), false)
            }
        };
        let matched = PasswordHash::new(hash)
            .ok()
            .zip(argon2().ok())
            .is_some_and(|(parsed, argon)| argon.verify_password(password, &parsed).is_ok());
        match (known, matched) {
            (false, _) => PasswordCheck::UnknownUser,
            (true, true) => PasswordCheck::Match,
            (true, false) => PasswordCheck::Mismatch,
        }
    }

    /// Writes the file atomically: a temporary file (mode 0600) in the same directory, synced,
    /// then renamed over the old one.
    pub(crate) fn save(&self, path: &Path) -> Result<(), PasswdError> {
        use std::io::Write;
        let write_err = |source| PasswdError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::from("# Cicada password file: managed with `cicada passwd`.\n");
        for (user, hash) in &self.users {
            text.push_str(&format!("{user}:{hash}\n"));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("passwd")
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(write_err)?;
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }
}

/// `cicada passwd`'s arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct PasswdArgs {
    /// Create FILE (or overwrite it) instead of updating it.
    #[arg(short = 'c')]
    create: bool,
    /// Take the password from the command line (it lands in the shell history).
    #[arg(short = 'b')]
    batch: bool,
    /// Delete USER.
    #[arg(short = 'D')]
    delete: bool,
    /// The password file.
    file: PathBuf,
    /// The user name.
    user: String,
    /// The password, with -b.
    password: Option<String>,
}

/// Runs `cicada passwd`: 0 done, 2 a usage error, 1 an I/O error.
pub(crate) fn command(args: PasswdArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let usage = |message: &str| {
        eprintln!("cicada: {message}");
        ExitCode::from(2)
    };
    if !valid_user(&args.user) {
        return usage("the user name must be non-empty, without `:` or control characters");
    }
    if args.create && args.delete {
        return usage("-c and -D do not go together");
    }
    let mut file = if args.create {
        PasswordFile::default()
    } else {
        if !args.file.exists() {
            return usage(&format!(
                "{} does not exist; use -c to create it",
                args.file.display()
            ));
        }
        match PasswordFile::load(&args.file) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("cicada: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if args.delete {
        if !file.remove(&args.user) {
            return usage(&format!(
                "user {:?} is not in {}",
                args.user,
                args.file.display()
            ));
        }
    } else {
        let password = match (args.batch, args.password) {
            (true, Some(p)) => {
                eprintln!(
                    "cicada: warning: a password on the command line lands in the shell history"
                );
                p
            }
            (true, None) => return usage("-b needs the password after the user name"),
            (false, Some(_)) => return usage("give the password only with -b"),
            (false, None) => match read_password() {
                Ok(p) => p,
                Err(message) => return usage(&message),
            },
        };
        if password.is_empty() {
            return usage("the password must not be empty");
        }
        match hash_password(password.as_bytes()) {
            Ok(hash) => file.set(&args.user, hash),
            Err(e) => {
                eprintln!("cicada: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    match file.save(&args.file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cicada: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Asks twice on the terminal, or reads the first line of standard input when it is not one.
fn read_password() -> Result<String, String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Reenter password: ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_unknown_users_are_told_apart() {
        let hash = hash_password(b"s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let file = PasswordFile::parse_text(&format!("# c\n\nalice:{hash}\n")).expect("valid");
        assert_eq!(file.len(), 1);
        assert_eq!(file.verify("alice", b"s3cret"), PasswordCheck::Match);
        assert_eq!(file.verify("alice", b"wrong"), PasswordCheck::Mismatch);
        assert_eq!(file.verify("bob", b"s3cret"), PasswordCheck::UnknownUser);
    }

    #[test]
    fn errors_name_the_line() {
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhh";
        let cases = [
            ("nocolon".to_string(), 1, "expected `user:hash`"),
            (format!("ok:{argon}\n:{argon}"), 2, "not a valid user name"),
            (
                "bob:$2y$10$abcdefghijklmnopqrstuv".to_string(),
                1,
                "not an argon2id hash",
            ),
            (format!("a:{argon}\na:{argon}"), 2, "appears twice"),
        ];
        for (text, line, message) in cases {
            let (l, m) = PasswordFile::parse_text(&text).expect_err(&text);
            assert_eq!(l, line, "{text}: {m}");
            assert!(m.contains(message), "{text}: {m}");
        }
    }

    #[test]
    fn saves_atomically_with_private_permissions() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("passwd");
        let mut file = PasswordFile::default();
        file.set("bob", hash_password(b"x").expect("hash"));
        file.save(&path).expect("save");
        let loaded = PasswordFile::load(&path).expect("load");
        assert_eq!(loaded.get_hash("bob"), file.get_hash("bob"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
