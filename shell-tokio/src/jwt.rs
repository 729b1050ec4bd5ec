//! JWT authentication (`[auth.jwt]`): the token travels in the CONNECT password and is verified
//! against an HMAC secret, a PEM public key or a JWKS file. HS256, RS256 and ES256 only.
//!
//! Algorithm confusion is ruled out by construction: every key is loaded for exactly one algorithm
//! (the secret for HS256, an RSA key for RS256, a P-256 key for ES256), a token is checked only
//! with a key of its own `alg`, and that `alg` must be listed in `auth.jwt.algorithms`. So an HS256
//! token never meets public key bytes as its secret, and `alg: none` is refused like any other
//! unlisted algorithm.
//!
//! Which key checks a token (one key, never a trial of several):
//! - a token with a `kid` gets the JWKS key with that `kid` and the token's algorithm; failing
//!   that, the `secret_file`/`public_key_file` key of that algorithm (issuers stamp a `kid` even
//!   when the operator configured their one key as PEM); failing that, it is refused (unknown kid);
//! - a token without a `kid` gets the `secret_file`/`public_key_file` key of its algorithm, or else
//!   the only JWKS key of that algorithm; with several it is refused (it must say which).
//!
//! `exp` and `nbf` are checked by jsonwebtoken against the system clock with `leeway_secs`; this
//! runs in the shell (on the blocking pool), never in the deterministic engine.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use base64::Engine as _;
use jsonwebtoken::errors::{self, ErrorKind};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// `[auth.jwt]`: which tokens are accepted and who they make the client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted `alg` values: HS256, RS256, ES256. A token whose `alg` is not listed is refused,
    /// which is what keeps an attacker from choosing the algorithm.
    pub algorithms: Vec<String>,
    /// HS256: the shared secret (the file's bytes, trailing newline trimmed; at least 32 bytes).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// RS256/ES256: a PEM public key or certificate (RSA, or EC on P-256); the certificate is not
    /// checked (no chain, no dates), only its key is used, as issuers often publish one.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: a JWKS document; the token's `kid` picks the key.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// When set, the token's `aud` (a string or an array) must contain it.
    #[serde(default)]
    pub audience: Option<String>,
    /// When set, the token's `iss` must be it.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The claim that becomes the MQTT user name (default `sub`).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds (default 30, at most [`MAX_LEEWAY_SECS`]).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Whether tokens without `exp` are refused (default true: a token that never expires cannot
    /// be withdrawn short of rotating the key).
    #[serde(default = "default_true")]
    pub require_exp: bool,
}

fn default_username_claim() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_true() -> bool {
    true
}

/// The largest `leeway_secs`: it is meant for clock skew, and a larger one would let expired
/// tokens in for hours.
pub const MAX_LEEWAY_SECS: u64 = 3600;

/// The shortest HS256 secret: RFC 7518 §3.2 asks for a key as long as the hash (256 bits).
const MIN_SECRET_LEN: usize = 32;

/// Why `[auth.jwt]` cannot be used; each names the config key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// A setting is missing or contradicts another.
    #[error("config key `auth.jwt.{key}`: {problem}; {fix}")]
    Config {
        key: &'static str,
        problem: String,
        fix: String,
    },
    /// A key file cannot be read.
    #[error("cannot read `auth.jwt.{key}` file {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A key file was read but holds no usable key.
    #[error("`auth.jwt.{key}` file {path}: {problem}; {fix}")]
    Key {
        key: &'static str,
        path: PathBuf,
        problem: String,
        fix: String,
    },
}

/// Why a token is refused: logged with the client (which hears only "bad user name or password").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtRejection {
    #[error("the token has expired (exp is past, beyond the leeway)")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future, beyond the leeway)")]
    NotYetValid,
    #[error("the token has no exp claim, and auth.jwt.require_exp is on")]
    MissingExpiry,
    #[error("wrong audience: the token's aud does not name {expected:?}")]
    WrongAudience { expected: String },
    #[error("wrong issuer: the token's iss is not {expected:?}")]
    WrongIssuer { expected: String },
    #[error("bad signature")]
    BadSignature,
    #[error("unknown kid {0:?}: no configured key has it")]
    UnknownKid(String),
    #[error("the token has no kid and the JWKS file holds several {0} keys")]
    KidRequired(&'static str),
    #[error("algorithm {0} is not allowed (auth.jwt.algorithms)")]
    AlgorithmNotAllowed(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("missing user name claim {0:?} (a non-empty string or a number)")]
    MissingUsername(String),
}

/// Who a verified token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIdentity {
    /// The `username_claim`'s value: the MQTT user name for ACLs and `%u`.
    pub username: String,
    /// Top-level claims that are strings, numbers or booleans (arrays of them: one entry per
    /// element), as text, sorted by name: what ACL `claim` rules match.
    pub claims: Vec<(String, String)>,
    /// `exp` in Unix seconds, if the token has one.
    pub expires_at: Option<u64>,
}

/// Where a key came from: decides how a token's `kid` picks it (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `secret_file` or `public_key_file`: one key, whatever the token's `kid`.
    File,
    /// `jwks_file`: picked by `kid`.
    Jwks,
}

/// A key, bound to the one algorithm it may check.
struct Key {
    alg: Algorithm,
    source: Source,
    kid: Option<String>,
    key: DecodingKey,
}

/// The loaded keys and rules; cheap to share (`Send + Sync`), verification takes `&self`.
pub struct JwtVerifier {
    /// One validation per listed algorithm: what jsonwebtoken checks besides the signature.
    validations: Vec<(Algorithm, Validation)>,
    keys: Vec<Key>,
    username_claim: String,
    audience: Option<String>,
    issuer: Option<String>,
}

/// The name a supported algorithm has in tokens and in the config.
fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "unsupported",
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|source| JwtError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn key_error(key: &'static str, path: &Path, problem: impl Into<String>, fix: &str) -> JwtError {
    JwtError::Key {
        key,
        path: path.to_path_buf(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn config_error(key: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> JwtError {
    JwtError::Config {
        key,
        problem: problem.into(),
        fix: fix.into(),
    }
}

impl JwtVerifier {
    /// Reads the key files and checks that every listed algorithm has a key.
    ///
    /// Errors name the config key (and the file) with the fix, so a broken `[auth.jwt]` stops the
    /// broker at start (or keeps the old keys on SIGHUP) instead of refusing every client later.
    pub fn load(config: &JwtConfig) -> Result<JwtVerifier, JwtError> {
        let algorithms = parse_algorithms(&config.algorithms)?;
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(config_error(
                "leeway_secs",
                format!("{} seconds is more than clock skew", config.leeway_secs),
                format!("use at most {MAX_LEEWAY_SECS}"),
            ));
        }
        if config.username_claim.is_empty() {
            return Err(config_error(
                "username_claim",
                "it is empty",
                "name the claim that holds the user name, e.g. \"sub\"",
            ));
        }
        let mut keys = Vec::new();
        if let Some(path) = &config.secret_file {
            keys.push(load_secret(path)?);
        }
        if let Some(path) = &config.public_key_file {
            keys.push(load_pem(path)?);
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(load_jwks(path)?);
        }
        for alg in &algorithms {
            if !keys.iter().any(|k| k.alg == *alg) {
                return Err(missing_key(*alg, config));
            }
        }
        Ok(JwtVerifier {
            validations: algorithms
                .iter()
                .map(|alg| (*alg, validation(*alg, config)))
                .collect(),
            keys,
            username_claim: config.username_claim.clone(),
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// Verifies `token` (signature, `alg`, `exp`/`nbf`, `aud`/`iss`); the identity it carries.
    pub fn verify(&self, token: &str) -> Result<JwtIdentity, JwtRejection> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| self.header_rejection(token, &e))?;
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(JwtRejection::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        };
        let key = self.key_for(header.alg, header.kid.as_deref())?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| self.rejection(&e))?;
        self.identity(&data.claims)
    }

    /// The one key that may check a token of `alg` with this `kid` (rules in the module doc).
    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Result<&DecodingKey, JwtRejection> {
        let fitting = || self.keys.iter().filter(move |k| k.alg == alg);
        if let Some(kid) = kid {
            if let Some(k) =
                fitting().find(|k| k.source == Source::Jwks && k.kid.as_deref() == Some(kid))
            {
                return Ok(&k.key);
            }
        }
        if let Some(k) = fitting().find(|k| k.source == Source::File) {
            return Ok(&k.key);
        }
        if let Some(kid) = kid {
            return Err(JwtRejection::UnknownKid(kid.to_string()));
        }
        let mut jwks = fitting();
        match (jwks.next(), jwks.next()) {
            (Some(k), None) => Ok(&k.key),
            (Some(_), Some(_)) => Err(JwtRejection::KidRequired(alg_name(alg))),
            // `load` gave every listed algorithm a key.
            (None, _) => Err(JwtRejection::AlgorithmNotAllowed(alg_name(alg).into())),
        }
    }

    /// Says plainly why jsonwebtoken refused a token.
    fn rejection(&self, error: &errors::Error) -> JwtRejection {
        let audience = || JwtRejection::WrongAudience {
            expected: self.audience.clone().unwrap_or_default(),
        };
        let issuer = || JwtRejection::WrongIssuer {
            expected: self.issuer.clone().unwrap_or_default(),
        };
        match error.kind() {
            ErrorKind::ExpiredSignature => JwtRejection::Expired,
            ErrorKind::ImmatureSignature => JwtRejection::NotYetValid,
            ErrorKind::InvalidAudience => audience(),
            ErrorKind::InvalidIssuer => issuer(),
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => audience(),
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => issuer(),
            ErrorKind::MissingRequiredClaim(c) if c == "exp" => JwtRejection::MissingExpiry,
            ErrorKind::InvalidSignature => JwtRejection::BadSignature,
            _ => JwtRejection::Malformed(error.to_string()),
        }
    }

    /// Why a token's header could not be read. An `alg` we do not accept (such as `none`, which
    /// jsonwebtoken cannot even parse) is named as such; a header with an accepted `alg` that
    /// fails for another reason (say a numeric `kid`) is malformed, not "algorithm not allowed".
    fn header_rejection(&self, token: &str, error: &errors::Error) -> JwtRejection {
        let alg = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
            .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_string));
        let accepted = |alg: &str| {
            Algorithm::from_str(alg).is_ok_and(|a| self.validations.iter().any(|(v, _)| *v == a))
        };
        match alg {
            Some(alg) if !accepted(&alg) => JwtRejection::AlgorithmNotAllowed(alg),
            _ => JwtRejection::Malformed(format!("header: {error}")),
        }
    }

    /// The user name and the flattened claims of a token whose signature and times passed.
    fn identity(&self, claims: &Map<String, Value>) -> Result<JwtIdentity, JwtRejection> {
        // jsonwebtoken skips `exp`/`nbf` it cannot read as numbers; a token must not slip past
        // its time limits by writing them as text.
        for time in ["exp", "nbf"] {
            if claims.get(time).is_some_and(|v| seconds(v).is_none()) {
                return Err(JwtRejection::Malformed(format!(
                    "{time} is not a number of seconds"
                )));
            }
        }
        let name = &self.username_claim;
        let username = match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(JwtRejection::MissingUsername(name.clone())),
        };
        let mut flat = Vec::new();
        for (claim, value) in claims {
            match value {
                Value::Array(items) => {
                    flat.extend(items.iter().filter_map(text).map(|t| (claim.clone(), t)));
                }
                other => flat.extend(text(other).map(|t| (claim.clone(), t))),
            }
        }
        // Stable: an array's elements keep their order under their shared name.
        flat.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(JwtIdentity {
            username,
            claims: flat,
            expires_at: claims.get("exp").and_then(seconds),
        })
    }
}

/// The configured algorithm names, parsed and deduplicated.
fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, JwtError> {
    if names.is_empty() {
        return Err(config_error(
            "algorithms",
            "the list is empty",
            "list at least one of \"HS256\", \"RS256\", \"ES256\"",
        ));
    }
    let mut algorithms = Vec::new();
    for name in names {
        let alg = match name.as_str() {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(config_error(
                    "algorithms",
                    format!("{other:?} is not supported"),
                    "use \"HS256\", \"RS256\" or \"ES256\"",
                ))
            }
        };
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

/// What jsonwebtoken checks for `alg`: times with the leeway, `aud`/`iss` when configured.
fn validation(alg: Algorithm, config: &JwtConfig) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.leeway_secs;
    v.validate_exp = true;
    v.validate_nbf = true;
    // jsonwebtoken checks `aud`/`iss` only when the token has them: configured, they are required.
    let mut required = HashSet::new();
    if config.require_exp {
        required.insert("exp".to_string());
    }
    match &config.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.insert("aud".to_string());
        }
        None => v.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        v.set_issuer(&[iss]);
        required.insert("iss".to_string());
    }
    v.required_spec_claims = required;
    v
}

/// The load error for a listed algorithm that has no key.
fn missing_key(alg: Algorithm, config: &JwtConfig) -> JwtError {
    let name = alg_name(alg);
    if alg == Algorithm::HS256 {
        return config_error(
            "secret_file",
            "HS256 is listed but has no shared secret",
            "set secret_file to a file holding it (e.g. `openssl rand -base64 32 > FILE`), \
             or remove HS256",
        );
    }
    let kind = if alg == Algorithm::RS256 {
        "an RSA"
    } else {
        "a P-256 EC"
    };
    let (key, problem) = match (&config.public_key_file, &config.jwks_file) {
        (None, None) => (
            "public_key_file",
            format!("{name} is listed but has no public key"),
        ),
        (Some(_), None) => (
            "public_key_file",
            format!("{name} needs {kind} public key, which the file does not hold"),
        ),
        (_, Some(_)) => (
            "jwks_file",
            format!("{name} needs {kind} public key, and no configured file holds one"),
        ),
    };
    config_error(
        key,
        problem,
        format!("set public_key_file (PEM) or jwks_file to {kind} key, or remove {name}"),
    )
}

/// Loads the HS256 secret.
fn load_secret(path: &Path) -> Result<Key, JwtError> {
    let mut secret = read("secret_file", path)?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(key_error(
            "secret_file",
            path,
            format!(
                "the secret is {} bytes, HS256 needs at least {MIN_SECRET_LEN}",
                secret.len()
            ),
            "write a longer secret, e.g. `openssl rand -base64 32 > FILE`",
        ));
    }
    Ok(Key {
        alg: Algorithm::HS256,
        source: Source::File,
        kid: None,
        key: DecodingKey::from_secret(&secret),
    })
}

/// The DER-encoded OID of curve P-256 (prime256v1), as it appears in its keys.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Loads `public_key_file`: an RSA key (RS256) or a P-256 EC key (ES256), bare (`PUBLIC KEY`,
/// `RSA PUBLIC KEY`) or in a `CERTIFICATE`.
fn load_pem(path: &Path) -> Result<Key, JwtError> {
    const FIX: &str =
        "give the issuer's public key or certificate in PEM (`openssl pkey -in KEY -pubout`)";
    let pem = read("public_key_file", path)?;
    let text = String::from_utf8_lossy(&pem);
    // jsonwebtoken would take a private key's bytes as a public key and then refuse every token.
    if text.contains("PRIVATE KEY") {
        return Err(key_error(
            "public_key_file",
            path,
            "it holds a private key",
            FIX,
        ));
    }
    let key = |alg, key| Key {
        alg,
        source: Source::File,
        kid: None,
        key,
    };
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok(key(Algorithm::RS256, k));
    }
    if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
        let der = pem_body(&text).unwrap_or_default();
        if !der.windows(P256_OID.len()).any(|w| w == P256_OID) {
            return Err(key_error(
                "public_key_file",
                path,
                "the EC key is not on curve P-256, the only one ES256 uses",
                FIX,
            ));
        }
        return Ok(key(Algorithm::ES256, k));
    }
    Err(key_error(
        "public_key_file",
        path,
        "no RSA or EC public key in PEM form",
        FIX,
    ))
}

/// The DER bytes of the first PEM block in `text`.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Only the `keys` array: each key is parsed on its own so that keys of other kinds (encryption
/// keys, other curves) do not stop the ones we can use.
#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Value>,
}

/// Loads the RS256 and ES256 signing keys of `jwks_file`; other keys are skipped.
fn load_jwks(path: &Path) -> Result<Vec<Key>, JwtError> {
    const FIX: &str = "give the issuer's JWKS document ({\"keys\": [...]})";
    let text = read("jwks_file", path)?;
    let set: RawJwks = serde_json::from_slice(&text)
        .map_err(|e| key_error("jwks_file", path, format!("not a JWKS document ({e})"), FIX))?;
    let mut keys: Vec<Key> = Vec::new();
    for raw in set.keys {
        let field = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_string);
        let alg = match field("kty").as_deref() {
            Some("RSA") => Algorithm::RS256,
            Some("EC") => Algorithm::ES256,
            // Symmetric and other keys: HS256 takes its secret from secret_file only.
            _ => continue,
        };
        let usable = field("use").is_none_or(|u| u == "sig")
            && field("alg").is_none_or(|a| a == alg_name(alg));
        if !usable {
            continue;
        }
        let kid = field("kid");
        let what = |problem: String| {
            key_error(
                "jwks_file",
                path,
                format!("key {}: {problem}", kid.as_deref().unwrap_or("without kid")),
                FIX,
            )
        };
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| what(e.to_string()))?;
        if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm {
            if ec.curve != EllipticCurve::P256 {
                continue;
            }
            let coordinate = |c: &str| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .is_ok_and(|b| b.len() == 32)
            };
            if !coordinate(&ec.x) || !coordinate(&ec.y) {
                return Err(what(
                    "x and y must be 32-byte base64url P-256 coordinates".into(),
                ));
            }
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| what(e.to_string()))?;
        if keys
            .iter()
            .any(|k| k.alg == alg && k.kid.is_some() && k.kid == kid)
        {
            return Err(what("another key has the same kid".into()));
        }
        keys.push(Key {
            alg,
            source: Source::Jwks,
            kid,
            key,
        });
    }
    Ok(keys)
}

/// A time claim in whole Unix seconds, if it is a non-negative number; a fraction is rounded,
/// as jsonwebtoken rounds it when it checks `exp`, so `expires_at` is the instant it checked.
fn seconds(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

/// A scalar claim as text; `None` for objects, arrays and null.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a password looks like a JWT: three base64url segments, the first a JSON object with
/// `alg`. Ordinary passwords then skip the JWT provider (and its signature check) entirely.
pub fn looks_like_jwt(password: &[u8]) -> bool {
    let base64url = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    };
    let mut parts = password.split(|b| *b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if header.is_empty()
        || payload.is_empty()
        || ![header, payload, signature].iter().all(|p| base64url(p))
    {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .is_some_and(|h| h.contains_key("alg"))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use jsonwebtoken::{encode, EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;

    use super::*;

    /// The HS256 secret the tests sign with (32 bytes, the minimum).
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    }

    fn b64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A temp dir for key files, and a config that points into it.
    struct Setup {
        dir: tempfile::TempDir,
        config: JwtConfig,
    }

    impl Setup {
        /// A config accepting `algorithms`, with no key source yet.
        fn new(algorithms: &[&str]) -> Setup {
            Setup {
                dir: tempfile::tempdir().expect("temp dir"),
                config: JwtConfig {
                    algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
                    secret_file: None,
                    public_key_file: None,
                    jwks_file: None,
                    audience: None,
                    issuer: None,
                    username_claim: default_username_claim(),
                    leeway_secs: default_leeway(),
                    require_exp: true,
                },
            }
        }

        /// An HS256 setup with [`SECRET`] in its secret file.
        fn hs256() -> Setup {
            let mut s = Setup::new(&["HS256"]);
            let mut file = SECRET.to_vec();
            file.push(b'\n');
            s.config.secret_file = Some(s.file("secret", &file));
            s
        }

        fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).expect("write key file");
            path
        }

        fn verifier(&self) -> JwtVerifier {
            JwtVerifier::load(&self.config).expect("the config loads")
        }

        fn load_error(&self) -> String {
            match JwtVerifier::load(&self.config) {
                Ok(_) => panic!("the config should not load"),
                Err(e) => e.to_string(),
            }
        }
    }

    /// Claims that pass every check unless `extra` overrides them.
    fn claims(extra: Value) -> Value {
        let mut claims = json!({"sub": "dev-1", "exp": now() + 600});
        if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            map.extend(extra);
        }
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        encode(&header, claims, key).expect("encode a token")
    }

    fn hs(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            None,
            claims,
            &EncodingKey::from_secret(SECRET),
        )
    }

    /// A token with any header, payload and signature (what jsonwebtoken would not sign).
    fn raw_token(header: &str, payload: &Value, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64url(header.as_bytes()),
            b64url(payload.to_string().as_bytes())
        )
    }

    /// A P-256 key pair made with ring.
    struct EcKey {
        pkcs8: Vec<u8>,
        /// The uncompressed point: 0x04, x, y.
        point: Vec<u8>,
    }

    impl EcKey {
        fn generate() -> EcKey {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate a P-256 key");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("parse the P-256 key");
            EcKey {
                point: pair.public_key().as_ref().to_vec(),
                pkcs8: pkcs8.as_ref().to_vec(),
            }
        }

        fn encoding(&self) -> EncodingKey {
            EncodingKey::from_ec_der(&self.pkcs8)
        }

        /// The public key as SPKI PEM: the fixed P-256 SPKI prefix, then the point.
        fn pem(&self) -> String {
            let mut der = vec![
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ];
            der.extend_from_slice(&self.point);
            let body = base64::engine::general_purpose::STANDARD.encode(der);
            format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n")
        }

        fn jwk(&self, kid: &str) -> Value {
            json!({"kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
                   "x": b64url(&self.point[1..33]), "y": b64url(&self.point[33..])})
        }
    }

    /// An RSA key pair made by the openssl command (ring cannot generate RSA keys).
    struct RsaKey {
        private_pem: Vec<u8>,
        public_pem: Vec<u8>,
        /// The modulus, big-endian.
        modulus: Vec<u8>,
    }

    impl RsaKey {
        fn generate() -> RsaKey {
            let dir = tempfile::tempdir().expect("temp dir");
            let private = dir.path().join("rsa.key");
            let private_pem = openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ]);
            std::fs::write(&private, &private_pem).expect("write the private key");
            let public_pem = openssl(&["pkey", "-pubout", "-in", path_arg(&private)]);
            let modulus = openssl(&["rsa", "-modulus", "-noout", "-in", path_arg(&private)]);
            let modulus = String::from_utf8(modulus).expect("utf-8 output");
            let hex = modulus
                .trim()
                .strip_prefix("Modulus=")
                .expect("openssl prints Modulus=HEX");
            RsaKey {
                private_pem,
                public_pem,
                modulus: (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
                    .collect(),
            }
        }

        fn encoding(&self) -> EncodingKey {
            EncodingKey::from_rsa_pem(&self.private_pem).expect("the private key")
        }

        fn jwk(&self, kid: &str) -> Value {
            json!({"kty": "RSA", "alg": "RS256", "kid": kid, "n": b64url(&self.modulus), "e": "AQAB"})
        }
    }

    /// Runs the openssl command; its standard output. Its progress dots on standard error are
    /// kept out of the test output, and shown only when it fails.
    fn openssl(args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl command runs");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn path_arg(path: &Path) -> &str {
        path.to_str().expect("utf-8 temp path")
    }

    /// A self-signed certificate for the private key in `key_pem`, as PEM.
    fn certificate(key_pem: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, key_pem).expect("write the key");
        let args = ["req", "-new", "-x509", "-days", "1", "-subj", "/CN=issuer"];
        let mut args = args.to_vec();
        args.extend(["-key", path_arg(&key)]);
        openssl(&args)
    }

    /// Two RSA keys, made once for all tests (generating them is the slow part).
    fn rsa_keys() -> &'static [RsaKey; 2] {
        static KEYS: OnceLock<[RsaKey; 2]> = OnceLock::new();
        KEYS.get_or_init(|| [RsaKey::generate(), RsaKey::generate()])
    }

    #[test]
    fn the_verifier_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<JwtVerifier>();
        shared::<JwtError>();
    }

    #[test]
    fn a_valid_hs256_token_gives_its_user_and_expiry() {
        let v = Setup::hs256().verifier();
        let exp = now() + 600;
        let id = v
            .verify(&hs(&json!({"sub": "dev-1", "exp": exp})))
            .expect("valid");
        assert_eq!(id.username, "dev-1");
        assert_eq!(id.expires_at, Some(exp));
        assert_eq!(
            id.claims,
            vec![
                ("exp".to_string(), exp.to_string()),
                ("sub".into(), "dev-1".into())
            ]
        );
        let id = v
            .verify(&hs(&json!({"sub": "dev-1", "exp": exp as f64 + 0.4})))
            .expect("valid");
        assert_eq!(
            id.expires_at,
            Some(exp),
            "rounded as jsonwebtoken rounds it"
        );
    }

    #[test]
    fn exp_and_nbf_are_checked_with_the_leeway() {
        let v = Setup::hs256().verifier();
        let t = now();
        let verify = |extra| v.verify(&hs(&claims(extra)));
        assert_eq!(verify(json!({"exp": t - 3600})), Err(JwtRejection::Expired));
        assert_eq!(
            verify(json!({"exp": t - 45})),
            Err(JwtRejection::Expired),
            "45 s late is beyond the 30 s leeway"
        );
        assert_eq!(
            verify(json!({"exp": t as f64 - 3600.5})),
            Err(JwtRejection::Expired),
            "a fractional exp is checked too"
        );
        assert!(
            verify(json!({"exp": t - 10})).is_ok(),
            "10 s late is within the 30 s leeway"
        );
        assert_eq!(
            verify(json!({"nbf": t + 3600})),
            Err(JwtRejection::NotYetValid)
        );
        assert_eq!(
            verify(json!({"nbf": t + 45})),
            Err(JwtRejection::NotYetValid)
        );
        assert!(
            verify(json!({"nbf": t + 10})).is_ok(),
            "10 s early is within the leeway"
        );
        assert!(matches!(
            verify(json!({"nbf": "later"})),
            Err(JwtRejection::Malformed(_))
        ));
    }

    #[test]
    fn exp_is_required_unless_switched_off() {
        let mut s = Setup::hs256();
        let no_exp = hs(&json!({"sub": "dev-1"}));
        assert_eq!(
            s.verifier().verify(&no_exp),
            Err(JwtRejection::MissingExpiry)
        );
        s.config.require_exp = false;
        let id = s.verifier().verify(&no_exp).expect("exp optional");
        assert_eq!(id.expires_at, None);
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let mut s = Setup::hs256();
        s.config.audience = Some("cicada".into());
        s.config.issuer = Some("https://auth.example.com/".into());
        let v = s.verifier();
        let iss = "https://auth.example.com/";
        let verify = |extra| v.verify(&hs(&claims(extra)));
        assert!(verify(json!({"aud": "cicada", "iss": iss})).is_ok());
        assert!(verify(json!({"aud": ["other", "cicada"], "iss": iss})).is_ok());
        let wrong_aud = Err(JwtRejection::WrongAudience {
            expected: "cicada".into(),
        });
        assert_eq!(verify(json!({"aud": "other", "iss": iss})), wrong_aud);
        assert_eq!(verify(json!({"aud": ["a", "b"], "iss": iss})), wrong_aud);
        assert_eq!(
            verify(json!({"iss": iss})),
            wrong_aud,
            "a missing aud is wrong too"
        );
        let wrong_iss = Err(JwtRejection::WrongIssuer {
            expected: iss.into(),
        });
        assert_eq!(
            verify(json!({"aud": "cicada", "iss": "https://evil/"})),
            wrong_iss
        );
        assert_eq!(
            verify(json!({"aud": "cicada"})),
            wrong_iss,
            "a missing iss is wrong too"
        );
    }

    #[test]
    fn a_token_signed_with_another_secret_has_a_bad_signature() {
        let v = Setup::hs256().verifier();
        let forged = sign(
            Algorithm::HS256,
            None,
            &claims(json!({})),
            &EncodingKey::from_secret(b"not the secret, but long enough!"),
        );
        assert_eq!(v.verify(&forged), Err(JwtRejection::BadSignature));
        // A genuine signature over other claims: the payload was swapped.
        let genuine = hs(&claims(json!({})));
        let admin = hs(&claims(json!({"sub": "admin"})));
        let (Some((signed, _)), Some((_, signature))) =
            (admin.rsplit_once('.'), genuine.rsplit_once('.'))
        else {
            panic!("tokens have three parts");
        };
        let tampered = format!("{signed}.{signature}");
        assert_eq!(v.verify(&tampered), Err(JwtRejection::BadSignature));
        assert!(matches!(v.verify("a.b.c"), Err(JwtRejection::Malformed(_))));
    }

    #[test]
    fn alg_none_and_unlisted_algorithms_are_refused() {
        let v = Setup::hs256().verifier();
        let none = raw_token(r#"{"alg":"none","typ":"JWT"}"#, &claims(json!({})), "");
        assert_eq!(
            v.verify(&none),
            Err(JwtRejection::AlgorithmNotAllowed("none".into()))
        );
        let hs384 = sign(
            Algorithm::HS384,
            None,
            &claims(json!({})),
            &EncodingKey::from_secret(SECRET),
        );
        assert_eq!(
            v.verify(&hs384),
            Err(JwtRejection::AlgorithmNotAllowed("HS384".into()))
        );
        let [rsa, _] = rsa_keys();
        let rs256 = sign(Algorithm::RS256, None, &claims(json!({})), &rsa.encoding());
        assert_eq!(
            v.verify(&rs256),
            Err(JwtRejection::AlgorithmNotAllowed("RS256".into()))
        );
    }

    #[test]
    fn an_hs256_token_never_meets_the_public_key_bytes() {
        let [rsa, _] = rsa_keys();
        // The classic confusion: HMAC with the (public) PEM as the secret.
        let confused = sign(
            Algorithm::HS256,
            None,
            &claims(json!({})),
            &EncodingKey::from_secret(&rsa.public_pem),
        );
        let mut s = Setup::new(&["RS256"]);
        s.config.public_key_file = Some(s.file("rsa.pub", &rsa.public_pem));
        assert_eq!(
            s.verifier().verify(&confused),
            Err(JwtRejection::AlgorithmNotAllowed("HS256".into()))
        );
        // With HS256 listed too, the token is checked with the secret only.
        let mut s = Setup::hs256();
        s.config.algorithms.push("RS256".into());
        s.config.public_key_file = Some(s.file("rsa.pub", &rsa.public_pem));
        assert_eq!(
            s.verifier().verify(&confused),
            Err(JwtRejection::BadSignature)
        );
    }

    #[test]
    fn rs256_with_a_pem_key() {
        let [rsa, other] = rsa_keys();
        let mut s = Setup::new(&["RS256"]);
        s.config.public_key_file = Some(s.file("rsa.pub", &rsa.public_pem));
        let v = s.verifier();
        let token = sign(
            Algorithm::RS256,
            None,
            &claims(json!({"sub": "rsa"})),
            &rsa.encoding(),
        );
        assert_eq!(v.verify(&token).expect("valid").username, "rsa");
        // The issuer's kid does not matter with a single PEM key.
        let token = sign(
            Algorithm::RS256,
            Some("k7"),
            &claims(json!({})),
            &rsa.encoding(),
        );
        assert!(v.verify(&token).is_ok());
        let token = sign(
            Algorithm::RS256,
            None,
            &claims(json!({})),
            &other.encoding(),
        );
        assert_eq!(v.verify(&token), Err(JwtRejection::BadSignature));
    }

    #[test]
    fn es256_with_a_pem_key() {
        let ec = EcKey::generate();
        let mut s = Setup::new(&["ES256"]);
        s.config.public_key_file = Some(s.file("ec.pem", ec.pem().as_bytes()));
        let v = s.verifier();
        let token = sign(
            Algorithm::ES256,
            None,
            &claims(json!({"sub": "ec"})),
            &ec.encoding(),
        );
        assert_eq!(v.verify(&token).expect("valid").username, "ec");
        let stranger = EcKey::generate();
        let token = sign(
            Algorithm::ES256,
            None,
            &claims(json!({})),
            &stranger.encoding(),
        );
        assert_eq!(v.verify(&token), Err(JwtRejection::BadSignature));
    }

    #[test]
    fn a_certificate_pem_gives_its_public_key() {
        let [rsa, _] = rsa_keys();
        let mut s = Setup::new(&["RS256"]);
        s.config.public_key_file = Some(s.file("rsa.crt", &certificate(&rsa.private_pem)));
        let token = sign(Algorithm::RS256, None, &claims(json!({})), &rsa.encoding());
        assert!(s.verifier().verify(&token).is_ok());

        let ec_private = openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ]);
        let mut s = Setup::new(&["ES256"]);
        s.config.public_key_file = Some(s.file("ec.crt", &certificate(&ec_private)));
        let key = EncodingKey::from_ec_pem(&ec_private).expect("the EC private key");
        let token = sign(Algorithm::ES256, None, &claims(json!({})), &key);
        assert!(s.verifier().verify(&token).is_ok());
    }

    #[test]
    fn a_header_with_an_accepted_alg_but_broken_fields_is_malformed() {
        let v = Setup::hs256().verifier();
        let token = raw_token(r#"{"alg":"HS256","kid":5}"#, &claims(json!({})), "c2ln");
        assert!(matches!(v.verify(&token), Err(JwtRejection::Malformed(_))));
    }

    #[test]
    fn jwks_keys_are_picked_by_kid() {
        let [r1, r2] = rsa_keys();
        let ec = EcKey::generate();
        let mut s = Setup::new(&["RS256", "ES256"]);
        let jwks = json!({"keys": [
            r1.jwk("r1"),
            r2.jwk("r2"),
            ec.jwk("e1"),
            {"kty": "oct", "kid": "s1", "k": b64url(SECRET)},
            {"kty": "RSA", "use": "enc", "kid": "x1", "n": b64url(&r1.modulus), "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
        ]});
        s.config.jwks_file = Some(s.file("jwks.json", jwks.to_string().as_bytes()));
        let v = s.verifier();
        let c = claims(json!({}));
        let rs = |kid, key: &RsaKey| v.verify(&sign(Algorithm::RS256, kid, &c, &key.encoding()));
        assert!(rs(Some("r1"), r1).is_ok());
        assert!(rs(Some("r2"), r2).is_ok());
        assert_eq!(
            rs(Some("r1"), r2),
            Err(JwtRejection::BadSignature),
            "kid r1 picks r1's key"
        );
        assert_eq!(
            rs(Some("r9"), r1),
            Err(JwtRejection::UnknownKid("r9".into()))
        );
        assert_eq!(
            rs(Some("e1"), r1),
            Err(JwtRejection::UnknownKid("e1".into())),
            "e1 is an ES256 key"
        );
        assert_eq!(
            rs(Some("x1"), r1),
            Err(JwtRejection::UnknownKid("x1".into())),
            "x1 encrypts"
        );
        assert_eq!(rs(None, r1), Err(JwtRejection::KidRequired("RS256")));
        let es = |kid| v.verify(&sign(Algorithm::ES256, kid, &c, &ec.encoding()));
        assert!(es(Some("e1")).is_ok());
        assert!(es(None).is_ok(), "the only ES256 key needs no kid");
        assert_eq!(es(Some("r1")), Err(JwtRejection::UnknownKid("r1".into())));
        let hs = sign(
            Algorithm::HS256,
            Some("s1"),
            &c,
            &EncodingKey::from_secret(SECRET),
        );
        assert_eq!(
            v.verify(&hs),
            Err(JwtRejection::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn the_username_comes_from_the_configured_claim() {
        let mut s = Setup::hs256();
        s.config.username_claim = "client".into();
        let v = s.verifier();
        let id = v
            .verify(&hs(&claims(json!({"client": "meter-7"}))))
            .expect("valid");
        assert_eq!(id.username, "meter-7");
        let id = v
            .verify(&hs(&claims(json!({"client": 42}))))
            .expect("valid");
        assert_eq!(id.username, "42");
        let missing = Err(JwtRejection::MissingUsername("client".into()));
        assert_eq!(
            v.verify(&hs(&claims(json!({})))),
            missing,
            "sub is not client"
        );
        assert_eq!(v.verify(&hs(&claims(json!({"client": ""})))), missing);
        assert_eq!(v.verify(&hs(&claims(json!({"client": ["a"]})))), missing);
    }

    #[test]
    fn scalar_claims_are_flattened_and_sorted() {
        let v = Setup::hs256().verifier();
        let exp = now() + 600;
        let token = hs(&json!({
            "sub": "dev-1", "exp": exp, "roles": ["writer", "reader", 3, {"x": 1}, null],
            "admin": false, "ratio": 0.5, "meta": {"a": "b"}, "none": null, "empty": [],
        }));
        let id = v.verify(&token).expect("valid");
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            id.claims,
            vec![
                pair("admin", "false"),
                pair("exp", &exp.to_string()),
                pair("ratio", "0.5"),
                pair("roles", "writer"),
                pair("roles", "reader"),
                pair("roles", "3"),
                pair("sub", "dev-1"),
            ]
        );
    }

    #[test]
    fn config_errors_name_the_key_and_the_fix() {
        let [rsa, _] = rsa_keys();
        let ec = EcKey::generate();
        let expect = |s: &Setup, key: &str, words: &str| {
            let e = s.load_error();
            assert!(e.contains(&format!("auth.jwt.{key}")), "{e}");
            assert!(e.contains(words), "{e}");
        };
        expect(&Setup::new(&["HS256"]), "secret_file", "set secret_file");
        expect(
            &Setup::new(&["RS256"]),
            "public_key_file",
            "set public_key_file (PEM) or jwks_file",
        );
        expect(
            &Setup::new(&["ES256"]),
            "public_key_file",
            "set public_key_file (PEM) or jwks_file",
        );
        expect(
            &Setup::new(&["HS512"]),
            "algorithms",
            "use \"HS256\", \"RS256\" or \"ES256\"",
        );
        expect(&Setup::new(&["none"]), "algorithms", "not supported");
        expect(&Setup::new(&[]), "algorithms", "at least one");

        let mut s = Setup::new(&["ES256"]);
        s.config.public_key_file = Some(s.file("rsa.pub", &rsa.public_pem));
        expect(&s, "public_key_file", "ES256 needs a P-256 EC public key");
        let p384 = openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ]);
        let mut s = Setup::new(&["ES256"]);
        let p384_key = s.file("p384.key", &p384);
        let p384_pub = openssl(&["pkey", "-pubout", "-in", path_arg(&p384_key)]);
        s.config.public_key_file = Some(s.file("p384.pub", &p384_pub));
        expect(&s, "public_key_file", "not on curve P-256");
        let mut s = Setup::new(&["RS256"]);
        s.config.jwks_file = Some(s.file(
            "jwks.json",
            json!({"keys": [ec.jwk("e1")]}).to_string().as_bytes(),
        ));
        expect(&s, "jwks_file", "RS256 needs an RSA public key");

        let mut s = Setup::new(&["RS256"]);
        s.config.public_key_file = Some(s.file("rsa.key", &rsa.private_pem));
        expect(&s, "public_key_file", "private key");
        s.config.public_key_file = Some(s.file("junk.pem", b"hello"));
        expect(&s, "public_key_file", "no RSA or EC public key");
        s.config.public_key_file = Some(s.dir.path().join("absent.pem"));
        expect(&s, "public_key_file", "absent.pem");
        s.config.public_key_file = None;
        s.config.jwks_file = Some(s.file("jwks.json", b"[1, 2]"));
        expect(&s, "jwks_file", "not a JWKS document");
        let doubled = json!({"keys": [rsa.jwk("r1"), rsa.jwk("r1")]});
        s.config.jwks_file = Some(s.file("jwks.json", doubled.to_string().as_bytes()));
        expect(&s, "jwks_file", "same kid");

        let mut s = Setup::hs256();
        s.config.secret_file = Some(s.file("short", b"hunter2\n"));
        expect(&s, "secret_file", "at least 32");
        let mut s = Setup::hs256();
        s.config.leeway_secs = 86_400;
        expect(&s, "leeway_secs", "at most 3600");
        let mut s = Setup::hs256();
        s.config.username_claim.clear();
        expect(&s, "username_claim", "empty");
    }

    #[test]
    fn the_toml_section_has_defaults_and_refuses_unknown_keys() {
        let c: JwtConfig =
            toml::from_str("algorithms = [\"RS256\"]\njwks_file = \"/k.json\"\n").expect("parses");
        assert_eq!(c.username_claim, "sub");
        assert_eq!(c.leeway_secs, 30);
        assert!(c.require_exp);
        assert!(toml::from_str::<JwtConfig>("algorithms = [\"RS256\"]\nsecret = \"x\"\n").is_err());
    }

    #[test]
    fn only_jwt_shaped_passwords_look_like_jwts() {
        assert!(looks_like_jwt(hs(&claims(json!({}))).as_bytes()));
        let none = raw_token(r#"{"alg":"none"}"#, &json!({}), "");
        assert!(
            looks_like_jwt(none.as_bytes()),
            "refused by verify, not passed on as a password"
        );
        assert!(!looks_like_jwt(b"hunter2"));
        assert!(!looks_like_jwt(b"a.b.c"));
        assert!(!looks_like_jwt(b"..."));
        assert!(!looks_like_jwt(&[0xff, 0xfe]));
        let no_alg = raw_token(r#"{"typ":"JWT"}"#, &json!({}), "c2ln");
        assert!(!looks_like_jwt(no_alg.as_bytes()));
        let four = format!("{}.x", hs(&claims(json!({}))));
        assert!(!looks_like_jwt(four.as_bytes()));
        let padded = format!("{}=.e30.c2ln", b64url(br#"{"alg":"HS256"}"#));
        assert!(
            !looks_like_jwt(padded.as_bytes()),
            "base64url in JWTs has no padding"
        );
    }
}
