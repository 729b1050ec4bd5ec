//! The RFC 5802 functions over SHA-256.

use std::num::NonZeroU32;

use ring::{digest, hmac, pbkdf2};

/// Output length of SHA-256.
pub(crate) const LEN: usize = 32;

pub(crate) type Key = [u8; LEN];

/// `HMAC(key, data)`.
pub(crate) fn hmac(key: &[u8], data: &[u8]) -> Key {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    to_key(tag.as_ref())
}

/// `H(data)`.
pub(crate) fn sha256(data: &[u8]) -> Key {
    to_key(digest::digest(&digest::SHA256, data).as_ref())
}

/// `Hi(password, salt, i)`: PBKDF2 with HMAC-SHA-256.
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: NonZeroU32) -> Key {
    let mut out = [0u8; LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password,
        &mut out,
    );
    out
}

pub(crate) fn xor(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; LEN];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// Equality in time independent of where the inputs differ.
pub(crate) fn same(a: &Key, b: &Key) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn to_key(bytes: &[u8]) -> Key {
    let mut out = [0u8; LEN];
    out.copy_from_slice(&bytes[..LEN]);
    out
}
