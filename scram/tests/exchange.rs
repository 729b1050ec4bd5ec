//! Whole exchanges: the RFC 7677 test vector on both sides, failures, and properties.

use std::num::NonZeroU32;

use cicada_scram::{
    ClientAwaitingServerFirst, ScramError, ServerAwaitingClientFinal, StoredCredentials,
};

// RFC 7677 §3.
const USER: &str = "user";
const PASSWORD: &str = "pencil";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
const SALT: [u8; 16] = [
    0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81,
];
const DECOY: &[u8] = b"server secret";

fn creds(password: &str) -> StoredCredentials {
    StoredCredentials::derive(password, &SALT, NonZeroU32::new(4096).expect("non-zero"))
}

#[test]
fn rfc7677_vector_server_side() {
    let stored = creds(PASSWORD);
    let (server, first) = ServerAwaitingClientFinal::start(
        CLIENT_FIRST.as_bytes(),
        |u| (u == USER).then_some(&stored),
        SERVER_NONCE,
        DECOY,
    )
    .expect("valid client-first");
    assert_eq!(first, SERVER_FIRST);
    assert_eq!(server.username(), USER);
    let done = server.finish(CLIENT_FINAL.as_bytes()).expect("valid proof");
    assert_eq!(done.server_final, SERVER_FINAL);
    assert_eq!(done.username, USER);
}

#[test]
fn rfc7677_vector_client_side() {
    let (client, first) = ClientAwaitingServerFirst::start(USER, PASSWORD, CLIENT_NONCE);
    assert_eq!(first, CLIENT_FIRST);
    let (client, last) = client.respond(SERVER_FIRST.as_bytes()).expect("valid");
    assert_eq!(last, CLIENT_FINAL);
    assert_eq!(client.verify(SERVER_FINAL.as_bytes()), Ok(()));
}

fn exchange(user: &str, password: &str, stored: &StoredCredentials) -> Result<(), ScramError> {
    let (client, first) = ClientAwaitingServerFirst::start(user, password, "cnonce");
    let (server, server_first) = ServerAwaitingClientFinal::start(
        first.as_bytes(),
        |u| (u == "alice").then_some(stored),
        "snonce",
        DECOY,
    )?;
    let (client, last) = client.respond(server_first.as_bytes())?;
    let done = server.finish(last.as_bytes())?;
    client.verify(done.server_final.as_bytes())
}

#[test]
fn wrong_passwords_and_unknown_users_fail_alike() {
    let stored = creds("right");
    assert_eq!(exchange("alice", "right", &stored), Ok(()));
    assert_eq!(
        exchange("alice", "wrong", &stored),
        Err(ScramError::InvalidProof)
    );
    assert_eq!(
        exchange("mallory", "right", &stored),
        Err(ScramError::InvalidProof)
    );

    // An unknown user's server-first looks like a known one's, and is stable across attempts.
    let first = |user: &str| {
        let msg = format!("n,,n={user},r=abc");
        ServerAwaitingClientFinal::start(msg.as_bytes(), |_| None, "xyz", DECOY)
            .expect("valid")
            .1
    };
    assert_eq!(first("mallory"), first("mallory"));
    assert_ne!(first("mallory"), first("eve"));
    assert!(first("mallory").ends_with(",i=4096"));
}

#[test]
fn a_server_that_does_not_know_the_password_is_caught() {
    let (client, _) = ClientAwaitingServerFirst::start(USER, PASSWORD, CLIENT_NONCE);
    let (client, _) = client.respond(SERVER_FIRST.as_bytes()).expect("valid");
    let forged = "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(
        client.verify(forged.as_bytes()),
        Err(ScramError::InvalidServerSignature)
    );
}

#[test]
fn replayed_or_tampered_finals_are_refused() {
    let stored = creds(PASSWORD);
    let start = || {
        ServerAwaitingClientFinal::start(
            CLIENT_FIRST.as_bytes(),
            |_| Some(&stored),
            "another-nonce",
            DECOY,
        )
        .expect("valid")
        .0
    };
    // The RFC's client-final belongs to another server nonce.
    assert_eq!(
        start().finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
    let (client, _) = ClientAwaitingServerFirst::start(USER, PASSWORD, CLIENT_NONCE);
    let err = client
        .respond(b"r=someone-else,s=AAAA,i=4096")
        .expect_err("foreign nonce");
    assert_eq!(err, ScramError::NonceMismatch);
    let (client, _) = ClientAwaitingServerFirst::start(USER, PASSWORD, CLIENT_NONCE);
    let huge = format!("r={CLIENT_NONCE}x,s=AAAA,i=4000000000");
    assert_eq!(
        client.respond(huge.as_bytes()).map(|_| ()),
        Err(ScramError::Iterations(4_000_000_000))
    );
}

#[test]
fn arbitrary_messages_never_panic_the_server() {
    let stored = creds(PASSWORD);
    bolero::check!()
        .with_type::<(Vec<u8>, Vec<u8>)>()
        .for_each(|(first, last)| {
            if let Ok((server, _)) =
                ServerAwaitingClientFinal::start(first, |_| Some(&stored), "n", DECOY)
            {
                let _ = server.finish(last);
            }
            if let Ok((server, _)) = ServerAwaitingClientFinal::start(
                CLIENT_FIRST.as_bytes(),
                |_| Some(&stored),
                SERVER_NONCE,
                DECOY,
            ) {
                let _ = server.finish(first);
            }
        });
}

#[test]
fn arbitrary_server_messages_never_panic_the_client() {
    bolero::check!()
        .with_type::<(Vec<u8>, Vec<u8>)>()
        .for_each(|(first, last)| {
            let (client, _) = ClientAwaitingServerFirst::start(USER, PASSWORD, "c");
            // Keep iterations small so a generated server-first cannot make a case slow.
            let capped = String::from_utf8_lossy(first).replace("i=", "i=1");
            if let Ok((client, _)) = client.respond(capped.as_bytes()) {
                let _ = client.verify(last);
            }
        });
}

#[test]
fn any_user_and_password_authenticate_with_their_own_credentials() {
    bolero::check!()
        .with_type::<(String, String)>()
        .with_iterations(20)
        .for_each(|(user, password)| {
            if user.is_empty() {
                return;
            }
            let stored = StoredCredentials::derive(password, &SALT, NonZeroU32::new(1).expect("1"));
            let (client, first) = ClientAwaitingServerFirst::start(user, password, "cn");
            let (server, sf) = ServerAwaitingClientFinal::start(
                first.as_bytes(),
                |u| (u == user).then_some(&stored),
                "sn",
                DECOY,
            )
            .expect("own client-first parses");
            let (client, last) = client
                .respond(sf.as_bytes())
                .expect("own server-first parses");
            let done = server.finish(last.as_bytes()).expect("own proof verifies");
            client
                .verify(done.server_final.as_bytes())
                .expect("own signature verifies");
        });
}
