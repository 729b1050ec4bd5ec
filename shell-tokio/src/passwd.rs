//! The password file for `auth.password.file`: one `user:hash` line per user, where the hash is an
//! argon2id PHC string, written by `cicada passwd` (our counterpart of `mosquitto_passwd`).
//!
//! argon2id because it is memory-hard: a stolen file costs an attacker memory as well as time for
//! every guess. New hashes use OWASP's minimum parameters (19 MiB, 2 passes, 1 lane), so one
//! [`PasswordFile::verify`] costs one argon2 run (about 0.3 s in a debug build, a small fraction of
//! that in a release build); callers must run it off the async executor (`spawn_blocking`).
//!
//! Every line is checked when the file is parsed, so a broken entry is a start or reload error
//! rather than a user who can never log in.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::rand::{SecureRandom, SystemRandom};

/// OWASP's recommended argon2id cost: m=19456 KiB, t=2, p=1 (checked at compile time).
const OWASP_PARAMS: Params = match Params::new(19_456, 2, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("the OWASP argon2id parameters are valid"),
};

/// The cheapest argon2id cost, so unit tests can hash freely; the CLI test runs the real binary,
/// which keeps [`OWASP_PARAMS`] exercised.
#[cfg(test)]
const CHEAP_PARAMS: Params = match Params::new(Params::MIN_M_COST, 1, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("the minimum argon2id parameters are valid"),
};

/// The cost of new hashes (and of the decoy, so unknown users cost what known ones do).
#[cfg(not(test))]
const COST: Params = OWASP_PARAMS;
#[cfg(test)]
const COST: Params = CHEAP_PARAMS;

/// Bytes of random salt per hash (argon2's and OWASP's recommendation).
const SALT_LEN: usize = 16;

/// The most memory a hash in the file may ask for at verification (1 GiB, in KiB): a typo such as
/// an extra digit in `m=` must fail at load, not abort the broker on an allocation at the first
/// login.
const MAX_M_COST: u32 = 1024 * 1024;

/// The first line of every file [`save`] writes, so whoever opens it knows how to change it.
const HEADER: &str = concat!(
    "# Cicada password file (auth.password.file), written by `cicada passwd FILE USER`; ",
    "comments and hand edits are lost when it next writes."
);

/// Why a password file cannot be read, parsed, changed or written.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// A line of text given to [`PasswordFile::parse`] is wrong.
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: LineProblem },
    #[error("cannot read password file {path} (`auth.password.file`): {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A line of the file at `path` is wrong.
    #[error("password file {path} (`auth.password.file`), line {line}: {problem}")]
    Invalid {
        path: PathBuf,
        line: usize,
        problem: LineProblem,
    },
    #[error("cannot write password file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{0}")]
    User(#[from] UserNameProblem),
    #[error("the password is empty; type it at the prompt, pipe it on standard input or give it after -b")]
    EmptyPassword,
    #[error("the two passwords differ; nothing was changed")]
    PasswordsDiffer,
    #[error("cannot read the password: {0}")]
    ReadPassword(#[source] io::Error),
    #[error("cannot hash the password: {0}")]
    Hash(#[source] argon2::password_hash::Error),
    #[error("the system random number generator failed")]
    Random,
}

impl PasswdError {
    /// Whether the file to read does not exist (`cicada passwd` then suggests `-c`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PasswdError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// What is wrong with one line of a password file; each message ends with the fix.
#[derive(Debug, thiserror::Error)]
pub enum LineProblem {
    #[error("expected `user:hash` but found no `:`; write entries with `cicada passwd FILE USER`")]
    MissingColon,
    #[error("{0}; fix the name or remove the line")]
    User(UserNameProblem),
    #[error("user {user:?} is already listed on line {first_line}; remove one of the two lines")]
    Duplicate { user: String, first_line: usize },
    #[error(
        "the hash of user {user:?} is not a PHC string ({source}); remove the line and set the \
         password again with `cicada passwd FILE USER`, which writes argon2id"
    )]
    NotPhc {
        user: String,
        source: argon2::password_hash::Error,
    },
    #[error(
        "the hash of user {user:?} is {algorithm}, but only argon2id is accepted; remove the line \
         and set the password again with `cicada passwd FILE USER`, which writes argon2id"
    )]
    NotArgon2id { user: String, algorithm: String },
    #[error(
        "the argon2id hash of user {user:?} is malformed ({detail}); remove the line and set the \
         password again with `cicada passwd FILE USER`"
    )]
    Malformed { user: String, detail: String },
}

/// Why a user name cannot go into a password file.
#[derive(Debug, thiserror::Error)]
pub enum UserNameProblem {
    #[error("the user name is empty")]
    Empty,
    #[error("the user name {0:?} contains `:`, which separates the name from the hash")]
    Colon(String),
    #[error("the user name {0:?} contains a control character")]
    Control(String),
    #[error("the user name {0:?} starts with `#`, which would make its line a comment")]
    Comment(String),
}

/// Checks that `user` can be written as a line of the file and read back as the same name.
pub fn check_user(user: &str) -> Result<(), UserNameProblem> {
    if user.is_empty() {
        Err(UserNameProblem::Empty)
    } else if user.contains(':') {
        Err(UserNameProblem::Colon(user.to_owned()))
    } else if user.chars().any(char::is_control) {
        Err(UserNameProblem::Control(user.to_owned()))
    } else if user.starts_with('#') {
        Err(UserNameProblem::Comment(user.to_owned()))
    } else {
        Ok(())
    }
}

/// The outcome of [`PasswordFile::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordCheck {
    Match,
    Mismatch,
    /// The user has no entry; the check still cost one argon2 run (see [`PasswordFile::verify`]).
    UnknownUser,
}

/// A parsed password file: user names and their argon2id hashes, sorted by user.
///
/// Every hash in it has been checked to be a well-formed argon2id PHC string.
#[derive(Clone, Default)]
pub struct PasswordFile {
    entries: BTreeMap<String, String>,
}

/// Lists the users only: hashes stay out of logs.
impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("users", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PasswordFile {
    /// Parses the text of a password file; errors name the line and the fix.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswdError> {
        let mut entries = BTreeMap::new();
        let mut first_lines: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, text) in text.lines().enumerate() {
            let line = index + 1;
            if text.starts_with('#') || text.trim().is_empty() {
                continue;
            }
            let at = |problem| PasswdError::Line { line, problem };
            let (user, hash) = text
                .split_once(':')
                .ok_or_else(|| at(LineProblem::MissingColon))?;
            check_user(user).map_err(|p| at(LineProblem::User(p)))?;
            let hash = hash.trim();
            check_hash(user, hash).map_err(at)?;
            if let Some(first_line) = first_lines.insert(user, line) {
                return Err(at(LineProblem::Duplicate {
                    user: user.to_owned(),
                    first_line,
                }));
            }
            entries.insert(user.to_owned(), hash.to_owned());
        }
        Ok(PasswordFile { entries })
    }

    /// Reads and parses the file at `path`; errors name the path and `auth.password.file`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswdError> {
        let text = fs::read_to_string(path).map_err(|source| PasswdError::Read {
            path: path.to_owned(),
            source,
        })?;
        PasswordFile::parse(&text).map_err(|e| match e {
            PasswdError::Line { line, problem } => PasswdError::Invalid {
                path: path.to_owned(),
                line,
                problem,
            },
            other => other,
        })
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file lists nobody.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user names, sorted.
    #[cfg(test)]
    pub fn users(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries.keys().map(String::as_str)
    }

    /// The stored hash of `user`; on reload, comparing it with the old file's tells whether a
    /// connected user's password changed (a new salt means a new hash even for the same password).
    pub fn get_hash(&self, user: &str) -> Option<&str> {
        self.entries.get(user).map(String::as_str)
    }

    /// Checks `password` for `user`. Slow on purpose (one argon2 run): call it off the executor.
    ///
    /// An unknown user costs one argon2 verification too, against a decoy hash with the cost of
    /// new hashes, so response time does not tell which users exist. (The decoy is computed on
    /// the first unknown user of the process, which therefore costs two runs once.)
    pub fn verify(&self, user: &str, password: &[u8]) -> PasswordCheck {
        match self.entries.get(user) {
            Some(hash) if password_matches(hash, password) => PasswordCheck::Match,
            Some(_) => PasswordCheck::Mismatch,
            None => {
                // The outcome is irrelevant; black_box keeps the work from being optimised away.
                if let Some(decoy) = decoy_hash() {
                    std::hint::black_box(password_matches(decoy, password));
                }
                PasswordCheck::UnknownUser
            }
        }
    }

    /// Sets `user`'s password (a new salt and hash), adding the user if absent.
    pub fn set_password(&mut self, user: &str, password: &[u8]) -> Result<(), PasswdError> {
        check_user(user)?;
        if password.is_empty() {
            return Err(PasswdError::EmptyPassword);
        }
        let hash = hash_password(password)?;
        self.entries.insert(user.to_owned(), hash);
        Ok(())
    }

    /// Removes `user`; returns whether it was there.
    pub fn remove(&mut self, user: &str) -> bool {
        self.entries.remove(user).is_some()
    }

    /// The file's text: the header, then one `user:hash` line per user in name order.
    fn render(&self) -> String {
        let mut text = format!("{HEADER}\n");
        for (user, hash) in &self.entries {
            text.push_str(user);
            text.push(':');
            text.push_str(hash);
            text.push('\n');
        }
        text
    }
}

/// Checks that `hash` is an argon2id PHC string argon2 can verify, so that no login fails later
/// on a malformed entry.
fn check_hash(user: &str, hash: &str) -> Result<(), LineProblem> {
    let parsed = PasswordHash::new(hash).map_err(|source| LineProblem::NotPhc {
        user: user.to_owned(),
        source,
    })?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(LineProblem::NotArgon2id {
            user: user.to_owned(),
            algorithm: parsed.algorithm.to_string(),
        });
    }
    let malformed = |detail: String| LineProblem::Malformed {
        user: user.to_owned(),
        detail,
    };
    if let Some(version) = parsed.version {
        Version::try_from(version).map_err(|e| malformed(e.to_string()))?;
    }
    let params = Params::try_from(&parsed).map_err(|e| malformed(e.to_string()))?;
    if params.m_cost() > MAX_M_COST {
        return Err(malformed(format!(
            "m={} KiB is more than the 1 GiB allowed",
            params.m_cost()
        )));
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(malformed("no salt or no hash".to_owned()));
    }
    Ok(())
}

/// The argon2id hasher for `params`.
fn argon2id(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Whether `password` matches the PHC string `phc` (whose own parameters apply).
fn password_matches(phc: &str, password: &[u8]) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| argon2id(COST).verify_password(password, &hash).is_ok())
}

/// The hash verified for unknown users: a fixed password and salt with the cost of new hashes.
///
/// `None` only if argon2 rejects our own constants, which it does not; the broker then merely
/// loses the timing cover, so there is nothing to panic about.
fn decoy_hash() -> Option<&'static str> {
    static DECOY: OnceLock<Option<String>> = OnceLock::new();
    DECOY
        .get_or_init(|| {
            let salt = SaltString::encode_b64(b"cicada-decoy-salt").ok()?;
            let hash = argon2id(COST)
                .hash_password(b"cicada-decoy-password", &salt)
                .ok()?;
            Some(hash.to_string())
        })
        .as_deref()
}

/// Hashes `password` as an argon2id PHC string with OWASP's parameters and a random 16-byte salt.
pub fn hash_password(password: &[u8]) -> Result<String, PasswdError> {
    hash_with(password, COST)
}

/// [`hash_password`] with explicit parameters.
fn hash_with(password: &[u8], params: Params) -> Result<String, PasswdError> {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswdError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(PasswdError::Hash)?;
    let hash = argon2id(params)
        .hash_password(password, &salt)
        .map_err(PasswdError::Hash)?;
    Ok(hash.to_string())
}

/// Writes `file` to `path` atomically: a temporary file beside it (mode 0600 on unix, since the
/// hashes are worth guarding), fsynced, then renamed over `path`, so the broker never reads half a
/// file and a crash leaves the old one.
pub fn save(path: &Path, file: &PasswordFile) -> Result<(), PasswdError> {
    replace_file(path, file.render().as_bytes()).map_err(|source| PasswdError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Replaces the file at `path` with `bytes` atomically: a reader sees the old file or the new one,
/// never half of one, and a crash leaves one of them (written to a temporary file in the same
/// directory, fsynced, renamed over, then the directory fsynced).
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // The process id keeps two writers (a `cicada passwd` run and the broker) apart.
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = dir.join(temp_name);
    let result = write_synced(&temp, bytes)
        .and_then(|()| fs::rename(&temp, path))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: after a successful rename there is nothing left to remove.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `path` afresh (never through an existing file or link), writes `bytes` and fsyncs.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes a rename in `dir` durable (unix; elsewhere the rename is all we can do).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads the new password for `cicada passwd`: prompted twice on a terminal, or else the first
/// line of standard input, so scripts and tests can pipe it in without it reaching the command
/// line.
pub fn read_new_password() -> Result<String, PasswdError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(PasswdError::ReadPassword)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").map_err(PasswdError::ReadPassword)?;
    let second =
        rpassword::prompt_password("Reenter password: ").map_err(PasswdError::ReadPassword)?;
    if first != second {
        return Err(PasswdError::PasswordsDiffer);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with `alice` and `bob`, hashed cheaply.
    fn two_users() -> PasswordFile {
        let mut file = PasswordFile::default();
        file.set_password("alice", b"alice-pw").expect("set alice");
        file.set_password("bob", b"bob-pw").expect("set bob");
        file
    }

    fn line_error(text: &str) -> (usize, LineProblem) {
        match PasswordFile::parse(text) {
            Err(PasswdError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn owasp_parameters_are_the_production_cost() {
        assert_eq!(
            (
                OWASP_PARAMS.m_cost(),
                OWASP_PARAMS.t_cost(),
                OWASP_PARAMS.p_cost()
            ),
            (19_456, 2, 1)
        );
    }

    #[test]
    fn hash_round_trips_through_a_file() {
        let hash = hash_password(b"s3cret").expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let salt = PasswordHash::new(&hash)
            .expect("phc")
            .salt
            .expect("salt")
            .as_str()
            .to_owned();
        // 16 bytes are 22 characters of unpadded base64.
        assert_eq!(salt.len(), 22);
        let other = hash_password(b"s3cret").expect("hash");
        assert_ne!(hash, other, "each hash gets a fresh salt");

        let file = PasswordFile::parse(&format!("alice:{hash}\n")).expect("parse");
        assert_eq!(file.get_hash("alice"), Some(hash.as_str()));
        assert_eq!(file.verify("alice", b"s3cret"), PasswordCheck::Match);
    }

    #[test]
    fn verify_tells_match_mismatch_and_unknown_user() {
        let file = two_users();
        assert_eq!(file.verify("alice", b"alice-pw"), PasswordCheck::Match);
        assert_eq!(file.verify("alice", b"bob-pw"), PasswordCheck::Mismatch);
        assert_eq!(file.verify("alice", b""), PasswordCheck::Mismatch);
        assert_eq!(
            file.verify("carol", b"alice-pw"),
            PasswordCheck::UnknownUser
        );
    }

    #[test]
    fn the_decoy_costs_what_a_new_hash_costs() {
        let decoy = PasswordHash::new(decoy_hash().expect("decoy")).expect("phc");
        let real_hash = hash_password(b"x").expect("hash");
        let real = PasswordHash::new(&real_hash).expect("phc");
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.params, real.params);
        assert_eq!(decoy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let hash = hash_password(b"pw").expect("hash");
        let text = format!("# a comment\n\n   \nbob:{hash}\r\n#alice:{hash}\nalice:{hash}  \n");
        let file = PasswordFile::parse(&text).expect("parse");
        assert_eq!(file.len(), 2);
        assert_eq!(file.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(file.get_hash("bob"), Some(hash.as_str()));
    }

    #[test]
    fn parse_errors_name_the_line() {
        let hash = hash_password(b"pw").expect("hash");
        let (line, problem) = line_error(&format!("# header\nalice:{hash}\nbob {hash}\n"));
        assert_eq!(line, 3);
        assert!(matches!(problem, LineProblem::MissingColon));
        let message = PasswdError::Line { line, problem }.to_string();
        assert!(
            message.starts_with("line 3: expected `user:hash`"),
            "{message}"
        );
        assert!(message.contains("cicada passwd"), "{message}");

        let (line, problem) = line_error(&format!(":{hash}\n"));
        assert_eq!(line, 1);
        assert!(matches!(problem, LineProblem::User(UserNameProblem::Empty)));

        let (line, problem) = line_error(&format!("\nal\u{7}ice:{hash}\n"));
        assert_eq!(line, 2);
        assert!(matches!(
            problem,
            LineProblem::User(UserNameProblem::Control(_))
        ));

        let (line, problem) = line_error("alice:not a hash\n");
        assert_eq!(line, 1);
        assert!(matches!(problem, LineProblem::NotPhc { .. }));

        let (line, problem) = line_error("alice:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ\n");
        assert_eq!(line, 1);
        assert!(
            matches!(problem, LineProblem::Malformed { .. }),
            "{problem}"
        );
    }

    #[test]
    fn duplicate_users_are_an_error_naming_both_lines() {
        let hash = hash_password(b"pw").expect("hash");
        let (line, problem) = line_error(&format!("alice:{hash}\nbob:{hash}\nalice:{hash}\n"));
        assert_eq!(line, 3);
        assert!(
            matches!(&problem, LineProblem::Duplicate { user, first_line: 1 } if user == "alice"),
            "{problem}"
        );
    }

    #[test]
    fn hashes_other_than_argon2id_are_rejected() {
        let salt = SaltString::encode_b64(&[7; SALT_LEN]).expect("salt");
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, CHEAP_PARAMS)
            .hash_password(b"pw", &salt)
            .expect("hash")
            .to_string();
        let (line, problem) = line_error(&format!("# header\nalice:{argon2i}\n"));
        assert_eq!(line, 2);
        assert!(
            matches!(&problem, LineProblem::NotArgon2id { algorithm, .. } if algorithm == "argon2i"),
            "{problem}"
        );
        assert!(problem
            .to_string()
            .contains("`cicada passwd FILE USER`, which writes argon2id"));

        // mosquitto_passwd's own format is not even a PHC string.
        let (_, problem) = line_error("alice:$7$101$c2FsdA==$aGFzaA==\n");
        assert!(matches!(problem, LineProblem::NotPhc { .. }), "{problem}");
    }

    #[test]
    fn absurd_memory_costs_are_rejected_at_load() {
        let hash = hash_password(b"pw").expect("hash");
        let greedy = hash.replace("m=8,", "m=4000000000,");
        assert_ne!(greedy, hash);
        let (_, problem) = line_error(&format!("alice:{greedy}\n"));
        assert!(
            matches!(problem, LineProblem::Malformed { .. }),
            "{problem}"
        );
    }

    #[test]
    fn user_names_must_survive_the_file_format() {
        assert!(check_user("alice smith").is_ok());
        assert!(check_user("ünïcödé").is_ok());
        assert!(matches!(check_user(""), Err(UserNameProblem::Empty)));
        assert!(matches!(check_user("a:b"), Err(UserNameProblem::Colon(_))));
        assert!(matches!(
            check_user("a\nb"),
            Err(UserNameProblem::Control(_))
        ));
        assert!(matches!(check_user("#a"), Err(UserNameProblem::Comment(_))));

        let mut file = PasswordFile::default();
        assert!(matches!(
            file.set_password("a:b", b"pw"),
            Err(PasswdError::User(UserNameProblem::Colon(_)))
        ));
        assert!(matches!(
            file.set_password("alice", b""),
            Err(PasswdError::EmptyPassword)
        ));
        assert_eq!(file.len(), 0);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwords");
        let file = two_users();
        save(&path, &file).expect("save");

        let text = fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], HEADER);
        assert!(lines[1].starts_with("alice:$argon2id$"), "{text}");
        assert!(lines[2].starts_with("bob:$argon2id$"), "{text}");

        let loaded = PasswordFile::load(&path).expect("load");
        assert_eq!(loaded.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(loaded.get_hash("bob"), file.get_hash("bob"));
        assert_eq!(loaded.verify("bob", b"bob-pw"), PasswordCheck::Match);

        // Saving again replaces the file and leaves no temporary file behind.
        let mut smaller = loaded;
        assert!(smaller.remove("alice"));
        assert!(!smaller.remove("alice"));
        save(&path, &smaller).expect("save again");
        assert_eq!(PasswordFile::load(&path).expect("load").len(), 1);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["passwords"]);
    }

    #[cfg(unix)]
    #[test]
    fn saved_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwords");
        // An existing world-readable file is replaced, not reused.
        fs::write(&path, "").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        save(&path, &two_users()).expect("save");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn load_errors_name_the_path_and_the_config_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwords");
        let missing = PasswordFile::load(&path).expect_err("missing");
        assert!(missing.is_not_found());
        let message = missing.to_string();
        assert!(
            message.contains("auth.password.file") && message.contains("passwords"),
            "{message}"
        );

        fs::write(&path, "# header\nalice\n").expect("write");
        let message = PasswordFile::load(&path).expect_err("invalid").to_string();
        assert!(
            message.contains("auth.password.file")
                && message
                    .contains("passwords (`auth.password.file`), line 2: expected `user:hash`"),
            "{message}"
        );
    }

    #[test]
    fn debug_output_shows_users_but_not_hashes() {
        let shown = format!("{:?}", two_users());
        assert!(
            shown.contains("alice") && !shown.contains("argon2"),
            "{shown}"
        );
    }
}
