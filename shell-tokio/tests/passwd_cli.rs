//! `cicada passwd` end to end: the real binary with the real argon2id parameters, in a temporary
//! directory. Each password set costs one full-cost hash (most of a second in a debug build), so
//! the scenario sets only three; the error cases fail before hashing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;

/// The prefix of every hash `cicada passwd` writes: argon2id with OWASP's parameters.
const OWASP_ARGON2ID: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

/// Runs `cicada passwd ARGS` with `stdin` piped in (so it is not a terminal).
fn cicada_passwd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cicada"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cicada");
    // The command may exit before reading (usage errors), so a broken pipe is fine.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait for cicada")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stderr: {}",
        stderr(output)
    );
}

/// The `user:hash` entries of the file at `path`, in file order, after checking the header.
fn entries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).expect("read the password file");
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    assert!(
        header.starts_with('#') && header.contains("cicada passwd"),
        "{text}"
    );
    lines
        .map(|line| {
            let (user, hash) = line.split_once(':').expect("user:hash");
            (user.to_owned(), hash.to_owned())
        })
        .collect()
}

fn hash_matches(hash: &str, password: &str) -> bool {
    let hash = PasswordHash::new(hash).expect("a PHC string");
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

#[test]
fn create_add_change_and_delete_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwords");
    let file = path.to_str().expect("utf-8 path");

    // -c -b: create the file with the password on the command line, with a warning.
    let out = cicada_passwd(&["-c", "-b", file, "alice", "s3cret"], "");
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("shell history"), "{}", stderr(&out));
    let created = entries(&path);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].0, "alice");
    assert!(created[0].1.starts_with(OWASP_ARGON2ID), "{created:?}");

    // A second user, the password piped on stdin (the line ending is not part of it).
    let out = cicada_passwd(&[file, "bob"], "hunter2\n");
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
    let added = entries(&path);
    let users: Vec<&str> = added.iter().map(|(user, _)| user.as_str()).collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(added[0], created[0], "alice is untouched");
    assert!(added[1].1.starts_with(OWASP_ARGON2ID), "{added:?}");
    assert!(hash_matches(&added[1].1, "hunter2"));

    // Changing alice's password replaces her hash and leaves bob's.
    let out = cicada_passwd(&[file, "alice"], "n3w-secret\r\n");
    assert_exit(&out, 0);
    let changed = entries(&path);
    assert_eq!(changed.len(), 2);
    assert_ne!(changed[0].1, created[0].1, "alice's old hash is gone");
    assert!(changed[0].1.starts_with(OWASP_ARGON2ID), "{changed:?}");
    assert_eq!(changed[1], added[1], "bob is untouched");

    // -D deletes bob.
    let out = cicada_passwd(&["-D", file, "bob"], "");
    assert_exit(&out, 0);
    assert_eq!(entries(&path), changed[..1]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn refusals_leave_the_file_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwords");
    let file = path.to_str().expect("utf-8 path");

    // Without -c the file must exist, and the message names the flag.
    let out = cicada_passwd(&[file, "alice"], "s3cret\n");
    assert_exit(&out, 2);
    assert!(
        stderr(&out).starts_with("cicada: ") && stderr(&out).contains("-c"),
        "{}",
        stderr(&out)
    );
    assert!(!path.exists());

    // An empty password file is valid; every refusal below must leave it byte for byte.
    let original = "# no users yet\n";
    std::fs::write(&path, original).expect("write");
    let refusals: [(&[&str], &str, &str); 5] = [
        (&["-D", file, "bob"], "", "not in"),
        (&[file, "alice"], "\n", "password is empty"),
        (&[file, "alice"], "", "password is empty"),
        (&[file, "a:b"], "s3cret\n", "`:`"),
        (&["-b", file, "al\tice", "s3cret"], "", "control character"),
    ];
    for (args, stdin, expected) in refusals {
        let out = cicada_passwd(args, stdin);
        assert_exit(&out, 2);
        let message = stderr(&out);
        assert!(
            message.starts_with("cicada: ") && message.contains(expected),
            "{args:?}: {message}"
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            original,
            "{args:?}"
        );
    }

    // Usage errors from the argument parser: -b without PASSWORD, PASSWORD without -b, -D with -c.
    for args in [
        &["-b", file, "alice"][..],
        &[file, "alice", "s3cret"],
        &["-c", "-D", file, "alice"],
    ] {
        assert_exit(&cicada_passwd(args, ""), 2);
    }

    // A malformed file is an error of the file (1), naming the line.
    std::fs::write(&path, "# header\nalice\n").expect("write");
    let out = cicada_passwd(&[file, "bob"], "s3cret\n");
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("line 2:"), "{}", stderr(&out));
}
