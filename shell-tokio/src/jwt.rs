//! JWT authentication: a token in the CONNECT password, verified against an HMAC secret, a PEM
//! public key or a JWKS file (`[auth.jwt]`). HS256, RS256 and ES256.
//!
//! Algorithm confusion is ruled out by construction: the token's `alg` must be configured, and each
//! algorithm is checked only with keys of its family (an HMAC token never meets public key bytes).

use std::collections::HashSet;
use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// `[auth.jwt]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtConfig {
    /// Accepted algorithms: HS256, RS256, ES256.
    pub(crate) algorithms: Vec<String>,
    /// HS256: the shared secret (the file's bytes, a trailing newline trimmed).
    #[serde(default)]
    pub(crate) secret_file: Option<PathBuf>,
    /// RS256/ES256: a PEM public key.
    #[serde(default)]
    pub(crate) public_key_file: Option<PathBuf>,
    /// RS256/ES256: a JWKS document; the token's `kid` picks the key.
    #[serde(default)]
    pub(crate) jwks_file: Option<PathBuf>,
    /// Required `aud`, if set.
    #[serde(default)]
    pub(crate) audience: Option<String>,
    /// Required `iss`, if set.
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    /// The claim that becomes the MQTT user name.
    #[serde(default = "default_username_claim")]
    pub(crate) username_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub(crate) leeway_secs: u64,
    /// Whether tokens without `exp` are refused.
    #[serde(default = "default_true")]
    pub(crate) require_exp: bool,
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

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    #[error("config key `auth.jwt.{key}`: {fix}")]
    Config { key: &'static str, fix: String },
    #[error("cannot read `auth.jwt.{key}` {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`auth.jwt.{key}` {path}: {why}")]
    Key {
        key: &'static str,
        path: PathBuf,
        why: String,
    },
}

/// Why a token is refused (logged with the client; the client hears 0x86).
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtRejection {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong audience")]
    WrongAudience,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("bad signature")]
    BadSignature,
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    #[error("missing claim {0:?}")]
    MissingClaim(String),
    #[error("malformed token: {0}")]
    Malformed(String),
}

/// Who a token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtIdentity {
    pub(crate) username: String,
    /// Top-level claims that are strings, numbers or booleans (arrays of them: one entry per
    /// element), as text, sorted by name.
    pub(crate) claims: Vec<(String, String)>,
    pub(crate) expires_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
}

fn family(alg: Algorithm) -> Option<Family> {
    match alg {
        Algorithm::HS256 => Some(Family::Hmac),
        Algorithm::RS256 => Some(Family::Rsa),
        Algorithm::ES256 => Some(Family::Ec),
        _ => None,
    }
}

/// The loaded keys and rules.
pub(crate) struct JwtVerifier {
    algorithms: Vec<Algorithm>,
    /// (kid, family, key): the secret, the PEM key, then the JWKS keys.
    keys: Vec<(Option<String>, Family, DecodingKey)>,
    config: JwtConfig,
}

fn read(key: &'static str, path: &PathBuf) -> Result<Vec<u8>, JwtError> {
    std::fs::read(path).map_err(|source| JwtError::Read {
        key,
        path: path.clone(),
        source,
    })
}

impl JwtVerifier {
    /// Reads the key files and checks that every algorithm has a key.
    pub(crate) fn load(config: &JwtConfig) -> Result<JwtVerifier, JwtError> {
        if config.algorithms.is_empty() {
            return Err(JwtError::Config {
                key: "algorithms",
                fix: "list at least one of HS256, RS256, ES256".into(),
            });
        }
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let alg = match name.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return Err(JwtError::Config {
                        key: "algorithms",
                        fix: format!("{other:?} is not supported; use HS256, RS256 or ES256"),
                    })
                }
            };
            algorithms.push(alg);
        }
        let mut keys = Vec::new();
        if let Some(path) = &config.secret_file {
            let mut secret = read("secret_file", path)?;
            while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                secret.pop();
            }
            if secret.is_empty() {
                return Err(JwtError::Key {
                    key: "secret_file",
                    path: path.clone(),
                    why: "the secret is empty".into(),
                });
            }
            keys.push((None, Family::Hmac, DecodingKey::from_secret(&secret)));
        }
        if let Some(path) = &config.public_key_file {
            let pem = read("public_key_file", path)?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .map(|k| (Family::Rsa, k))
                .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|k| (Family::Ec, k)))
                .map_err(|e| JwtError::Key {
                    key: "public_key_file",
                    path: path.clone(),
                    why: format!("not an RSA or EC public key in PEM form ({e})"),
                })?;
            keys.push((None, key.0, key.1));
        }
        if let Some(path) = &config.jwks_file {
            let text = read("jwks_file", path)?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| JwtError::Key {
                key: "jwks_file",
                path: path.clone(),
                why: format!("not a JWKS document ({e})"),
            })?;
            for jwk in &set.keys {
                let fam = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                    // Symmetric keys and others have no place in a public key set.
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| JwtError::Key {
                    key: "jwks_file",
                    path: path.clone(),
                    why: format!("key {:?}: {e}", jwk.common.key_id),
                })?;
                keys.push((jwk.common.key_id.clone(), fam, key));
            }
        }
        for alg in &algorithms {
            let fam = family(*alg);
            if !keys.iter().any(|(_, f, _)| Some(*f) == fam) {
                let (key, fix) = if fam == Some(Family::Hmac) {
                    (
                        "secret_file",
                        "HS256 needs a shared secret: set secret_file",
                    )
                } else {
                    (
                        "public_key_file",
                        "RS256 and ES256 need a public key: set public_key_file or jwks_file",
                    )
                };
                return Err(JwtError::Config {
                    key,
                    fix: format!("{fix} (for {alg:?})"),
                });
            }
        }
        Ok(JwtVerifier {
            algorithms,
            keys,
            config: config.clone(),
        })
    }

    /// Verifies `token`; the identity it carries.
    pub(crate) fn verify(&self, token: &str) -> Result<JwtIdentity, JwtRejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| JwtRejection::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(JwtRejection::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        }
        let fam = family(header.alg)
            .ok_or_else(|| JwtRejection::AlgorithmNotAllowed(format!("{:?}", header.alg)))?;
        let candidates: Vec<&DecodingKey> = self
            .keys
            .iter()
            .filter(|(kid, f, _)| {
                *f == fam
                    && match (&header.kid, kid) {
                        (Some(want), Some(have)) => want == have,
                        (Some(_), None) => true,
                        (None, _) => true,
                    }
            })
            .map(|(_, _, k)| k)
            .collect();
        if candidates.is_empty() {
            return Err(match &header.kid {
                Some(kid) => JwtRejection::UnknownKid(kid.clone()),
                None => JwtRejection::BadSignature,
            });
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway_secs;
        validation.validate_nbf = true;
        let mut required: HashSet<String> = HashSet::new();
        if self.config.require_exp {
            required.insert("exp".into());
        }
        validation.required_spec_claims = required;
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = JwtRejection::BadSignature;
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => return self.identity(&data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(JwtRejection::Expired),
                        ErrorKind::ImmatureSignature => return Err(JwtRejection::NotYetValid),
                        ErrorKind::InvalidAudience => return Err(JwtRejection::WrongAudience),
                        ErrorKind::InvalidIssuer => return Err(JwtRejection::WrongIssuer),
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(JwtRejection::MissingClaim(c.clone()))
                        }
                        ErrorKind::InvalidSignature => JwtRejection::BadSignature,
                        other => JwtRejection::Malformed(format!("{other:?}")),
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: &serde_json::Value) -> Result<JwtIdentity, JwtRejection> {
        let name = &self.config.username_claim;
        let username = match claims.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(JwtRejection::MissingClaim(name.clone())),
        };
        let mut flat = Vec::new();
        if let Some(map) = claims.as_object() {
            for (k, v) in map {
                match v {
                    serde_json::Value::Array(items) => {
                        flat.extend(items.iter().filter_map(scalar).map(|s| (k.clone(), s)));
                    }
                    other => flat.extend(scalar(other).map(|s| (k.clone(), s))),
                }
            }
        }
        flat.sort();
        Ok(JwtIdentity {
            username,
            claims: flat,
            expires_at: claims.get("exp").and_then(serde_json::Value::as_u64),
        })
    }
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether a password looks like a JWT (so ordinary passwords skip the JWT provider).
pub(crate) fn looks_like_jwt(password: &[u8]) -> bool {
    use base64::Engine as _;
    let Ok(text) = std::str::from_utf8(password) else {
        return false;
    };
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 3 || parts.iter().take(2).any(|p| p.is_empty()) {
        return false;
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .is_some_and(|h| h.get("alg").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    fn config(dir: &std::path::Path, algorithms: &[&str]) -> JwtConfig {
        JwtConfig {
            algorithms: algorithms.iter().map(|s| s.to_string()).collect(),
            secret_file: None,
            public_key_file: None,
            jwks_file: None,
            audience: None,
            issuer: None,
            username_claim: "sub".into(),
            leeway_secs: 30,
            require_exp: true,
        }
        .with_secret(dir)
    }

    impl JwtConfig {
        fn with_secret(mut self, dir: &std::path::Path) -> JwtConfig {
            if self.algorithms.iter().any(|a| a == "HS256") {
                let path = dir.join("secret");
                std::fs::write(&path, "top secret\n").expect("write");
                self.secret_file = Some(path);
            }
            self
        }
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"top secret"),
        )
        .expect("encode")
    }

    #[test]
    fn hs256_tokens_and_their_checks() {
        let dir = tempfile::tempdir().expect("dir");
        let mut c = config(dir.path(), &["HS256"]);
        c.audience = Some("cicada".into());
        c.issuer = Some("me".into());
        let v = JwtVerifier::load(&c).expect("load");
        let t = now();
        let ok = json!({"sub": "dev-1", "aud": "cicada", "iss": "me", "exp": t + 60, "role": ["a", "b"], "n": 3, "f": true});
        let id = v.verify(&hs(ok)).expect("valid");
        assert_eq!(id.username, "dev-1");
        assert!(id.claims.contains(&("role".into(), "a".into())));
        assert!(id.claims.contains(&("role".into(), "b".into())));
        assert!(id.claims.contains(&("n".into(), "3".into())));
        assert!(id.claims.contains(&("f".into(), "true".into())));
        let base = |extra: serde_json::Value| {
            let mut claims = json!({"sub": "d", "aud": "cicada", "iss": "me", "exp": t + 60});
            if let (Some(m), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
                for (k, val) in e {
                    m.insert(k.clone(), val.clone());
                }
            }
            v.verify(&hs(claims))
        };
        assert!(matches!(
            base(json!({"exp": t - 3600})),
            Err(JwtRejection::Expired)
        ));
        assert!(base(json!({"exp": t - 10})).is_ok(), "within the leeway");
        assert!(matches!(
            base(json!({"nbf": t + 3600})),
            Err(JwtRejection::NotYetValid)
        ));
        assert!(matches!(
            base(json!({"aud": "other"})),
            Err(JwtRejection::WrongAudience)
        ));
        assert!(matches!(
            base(json!({"iss": "them"})),
            Err(JwtRejection::WrongIssuer)
        ));
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "d", "aud": "cicada", "iss": "me", "exp": t + 60}),
            &EncodingKey::from_secret(b"guess"),
        )
        .expect("encode");
        assert!(matches!(v.verify(&forged), Err(JwtRejection::BadSignature)));
        assert!(matches!(v.verify("a.b.c"), Err(JwtRejection::Malformed(_))));
        let no_user = hs(json!({"aud": "cicada", "iss": "me", "exp": t + 60}));
        assert!(matches!(
            v.verify(&no_user),
            Err(JwtRejection::MissingClaim(_))
        ));
        let no_exp = hs(json!({"sub": "d", "aud": "cicada", "iss": "me"}));
        assert!(matches!(
            v.verify(&no_exp),
            Err(JwtRejection::MissingClaim(_))
        ));
    }

    #[test]
    fn alg_none_and_unlisted_algorithms_are_refused() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().expect("dir");
        let v = JwtVerifier::load(&config(dir.path(), &["HS256"])).expect("load");
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"sub":"x","exp":9999999999}"#)
        );
        assert!(v.verify(&none).is_err());
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "d", "exp": now() + 60}),
            &EncodingKey::from_secret(b"top secret"),
        )
        .expect("encode");
        assert!(matches!(
            v.verify(&hs384),
            Err(JwtRejection::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn es256_with_a_pem_key_and_a_jwks_file() {
        use base64::Engine as _;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("pair");
        let point = pair.public_key().as_ref().to_vec();
        // SubjectPublicKeyInfo for a P-256 key: a fixed prefix, then the uncompressed point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(&point);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        let dir = tempfile::tempdir().expect("dir");
        let pem_path = dir.path().join("ec.pem");
        std::fs::write(&pem_path, pem).expect("write");
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let claims = json!({"sub": "ec-user", "exp": now() + 60});
        let mut header = Header::new(Algorithm::ES256);
        let token = encode(&header, &claims, &key).expect("encode");
        let mut c = config(dir.path(), &["ES256"]);
        c.public_key_file = Some(pem_path);
        let v = JwtVerifier::load(&c).expect("load");
        assert_eq!(v.verify(&token).expect("valid").username, "ec-user");
        // An HS256 token made with the public key's bytes as secret gets nowhere.
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&spki),
        )
        .expect("encode");
        assert!(matches!(
            v.verify(&confused),
            Err(JwtRejection::AlgorithmNotAllowed(_))
        ));

        let url = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": url(&point[1..33]), "y": url(&point[33..])}]});
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).expect("write");
        let mut c = config(dir.path(), &["ES256"]);
        c.jwks_file = Some(jwks_path);
        let v = JwtVerifier::load(&c).expect("load");
        header.kid = Some("k1".into());
        assert!(v
            .verify(&encode(&header, &claims, &key).expect("encode"))
            .is_ok());
        header.kid = Some("k2".into());
        assert!(matches!(
            v.verify(&encode(&header, &claims, &key).expect("encode")),
            Err(JwtRejection::UnknownKid(_))
        ));
    }

    #[test]
    fn rs256_with_a_pem_key() {
        let dir = tempfile::tempdir().expect("dir");
        let private = dir.path().join("rsa.key");
        let public = dir.path().join("rsa.pub");
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&private)
            .status()
            .expect("openssl (installed by the test command)")
            .success();
        assert!(ok);
        let ok = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .expect("openssl")
            .success();
        assert!(ok);
        let key = EncodingKey::from_rsa_pem(&std::fs::read(&private).expect("read")).expect("key");
        let token = encode(
            &Header::new(Algorithm::RS256),
            &json!({"sub": "rsa", "exp": now() + 60}),
            &key,
        )
        .expect("encode");
        let mut c = config(dir.path(), &["RS256"]);
        c.public_key_file = Some(public);
        let v = JwtVerifier::load(&c).expect("load");
        assert_eq!(v.verify(&token).expect("valid").username, "rsa");
    }

    #[test]
    fn config_errors_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let mut c = config(dir.path(), &["RS256"]);
        let e = JwtVerifier::load(&c).err().expect("no key").to_string();
        assert!(e.contains("auth.jwt.public_key_file"), "{e}");
        c.algorithms = vec!["HS512".into()];
        let e = JwtVerifier::load(&c)
            .err()
            .expect("unsupported")
            .to_string();
        assert!(e.contains("auth.jwt.algorithms"), "{e}");
        c.algorithms = vec!["HS256".into()];
        let e = JwtVerifier::load(&c).err().expect("no secret").to_string();
        assert!(e.contains("auth.jwt.secret_file"), "{e}");
        c.algorithms.clear();
        assert!(JwtVerifier::load(&c).is_err());
    }

    #[test]
    fn only_jwt_shaped_passwords_look_like_jwts() {
        assert!(looks_like_jwt(hs(json!({"sub": "x"})).as_bytes()));
        assert!(!looks_like_jwt(b"hunter2"));
        assert!(!looks_like_jwt(b"a.b.c"));
        assert!(!looks_like_jwt(&[0xff, 0xfe]));
    }
}
