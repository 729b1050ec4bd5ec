//! The four SCRAM messages (RFC 5802 §7): parsing and the attribute grammar.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::{Key, LEN};
use crate::ScramError;

fn malformed(message: &'static str, rule: &'static str) -> ScramError {
    ScramError::Malformed { message, rule }
}

/// `attr=value` pairs separated by commas, each attribute a single letter.
fn attributes<'a>(
    message: &'static str,
    text: &'a str,
) -> Result<Vec<(char, &'a str)>, ScramError> {
    text.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(name), Some('=')) if name.is_ascii_alphabetic() => Ok((name, &part[2..])),
                _ => Err(malformed(message, "expected `attribute=value` pairs")),
            }
        })
        .collect()
}

/// The value of `name` at position `index`.
fn expect<'a>(
    message: &'static str,
    attrs: &[(char, &'a str)],
    index: usize,
    name: char,
    rule: &'static str,
) -> Result<&'a str, ScramError> {
    match attrs.get(index) {
        Some((n, value)) if *n == name => Ok(value),
        _ => Err(malformed(message, rule)),
    }
}

/// A nonce: printable ASCII other than `,`.
fn nonce(message: &'static str, value: &str) -> Result<String, ScramError> {
    let printable = value
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    if value.is_empty() || !printable {
        return Err(malformed(
            message,
            "the nonce must be printable ASCII without `,`",
        ));
    }
    Ok(value.to_string())
}

/// Decodes a `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn sasl_name(message: &'static str, value: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed(message, "`=` in a name must be `=2C` or `=3D`")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(malformed(message, "the user name is empty"));
    }
    Ok(out)
}

/// Encodes a `saslname`.
pub(crate) fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

pub(crate) fn decode_key(message: &'static str, value: &str) -> Result<Key, ScramError> {
    let bytes = STANDARD
        .decode(value)
        .map_err(|_| malformed(message, "expected base64"))?;
    let key: [u8; LEN] = bytes
        .try_into()
        .map_err(|_| malformed(message, "expected 32 bytes"))?;
    Ok(key)
}

fn utf8<'a>(message: &'static str, data: &'a [u8]) -> Result<&'a str, ScramError> {
    std::str::from_utf8(data).map_err(|_| malformed(message, "not UTF-8"))
}

/// `gs2-header client-first-message-bare`.
#[derive(Debug)]
pub(crate) struct ClientFirst {
    /// `n,,` / `y,,` / `n,a=...,`: echoed (base64) in client-final's `c=`.
    pub(crate) gs2_header: String,
    pub(crate) bare: String,
    pub(crate) username: String,
    pub(crate) nonce: String,
}

const CLIENT_FIRST: &str = "client-first-message";

impl ClientFirst {
    pub(crate) fn parse(data: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = utf8(CLIENT_FIRST, data)?;
        let (flag, rest) = text
            .split_once(',')
            .ok_or_else(|| malformed(CLIENT_FIRST, "expected a GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBindingUnsupported),
            _ => return Err(malformed(CLIENT_FIRST, "the GS2 flag must be n, y or p=")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or_else(|| malformed(CLIENT_FIRST, "expected a GS2 header"))?;
        if !authzid.is_empty() && !authzid.starts_with("a=") {
            return Err(malformed(
                CLIENT_FIRST,
                "the authorization identity must be a=...",
            ));
        }
        let attrs = attributes(CLIENT_FIRST, bare)?;
        if attrs.first().is_some_and(|(n, _)| *n == 'm') {
            return Err(malformed(
                CLIENT_FIRST,
                "mandatory extensions are not supported",
            ));
        }
        let user = expect(CLIENT_FIRST, &attrs, 0, 'n', "expected n=<user> first")?;
        let nonce_value = expect(CLIENT_FIRST, &attrs, 1, 'r', "expected r=<nonce> second")?;
        Ok(ClientFirst {
            gs2_header: format!("{flag},{authzid},"),
            bare: bare.to_string(),
            username: sasl_name(CLIENT_FIRST, user)?,
            nonce: nonce(CLIENT_FIRST, nonce_value)?,
        })
    }
}

/// `r=<nonce>,s=<salt>,i=<iterations>`.
#[derive(Debug)]
pub(crate) struct ServerFirst {
    pub(crate) nonce: String,
    pub(crate) salt: Vec<u8>,
    pub(crate) iterations: u32,
}

const SERVER_FIRST: &str = "server-first-message";

impl ServerFirst {
    pub(crate) fn parse(text: &str) -> Result<ServerFirst, ScramError> {
        let attrs = attributes(SERVER_FIRST, text)?;
        if attrs.first().is_some_and(|(n, _)| *n == 'm') {
            return Err(malformed(
                SERVER_FIRST,
                "mandatory extensions are not supported",
            ));
        }
        let r = expect(SERVER_FIRST, &attrs, 0, 'r', "expected r=<nonce> first")?;
        let s = expect(SERVER_FIRST, &attrs, 1, 's', "expected s=<salt> second")?;
        let i = expect(
            SERVER_FIRST,
            &attrs,
            2,
            'i',
            "expected i=<iterations> third",
        )?;
        Ok(ServerFirst {
            nonce: nonce(SERVER_FIRST, r)?,
            salt: STANDARD
                .decode(s)
                .map_err(|_| malformed(SERVER_FIRST, "the salt is not base64"))?,
            iterations: i
                .parse()
                .map_err(|_| malformed(SERVER_FIRST, "the iteration count is not a number"))?,
        })
    }
}

/// `c=<gs2 header>,r=<nonce>[,ext],p=<proof>`.
#[derive(Debug)]
pub(crate) struct ClientFinal {
    pub(crate) channel_binding: Vec<u8>,
    pub(crate) nonce: String,
    /// Everything before `,p=`: part of the AuthMessage.
    pub(crate) without_proof: String,
    pub(crate) proof: Key,
}

const CLIENT_FINAL: &str = "client-final-message";

impl ClientFinal {
    pub(crate) fn parse(data: &[u8]) -> Result<ClientFinal, ScramError> {
        let text = utf8(CLIENT_FINAL, data)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| malformed(CLIENT_FINAL, "expected p=<proof> last"))?;
        let attrs = attributes(CLIENT_FINAL, without_proof)?;
        let c = expect(CLIENT_FINAL, &attrs, 0, 'c', "expected c=<binding> first")?;
        let r = expect(CLIENT_FINAL, &attrs, 1, 'r', "expected r=<nonce> second")?;
        Ok(ClientFinal {
            channel_binding: STANDARD
                .decode(c)
                .map_err(|_| malformed(CLIENT_FINAL, "the channel binding is not base64"))?,
            nonce: nonce(CLIENT_FINAL, r)?,
            without_proof: without_proof.to_string(),
            proof: decode_key(CLIENT_FINAL, proof)?,
        })
    }
}

/// `v=<signature>` or `e=<error>`.
pub(crate) enum ServerFinal {
    Verifier(Key),
    Error(String),
}

const SERVER_FINAL: &str = "server-final-message";

impl ServerFinal {
    pub(crate) fn parse(text: &str) -> Result<ServerFinal, ScramError> {
        let attrs = attributes(SERVER_FINAL, text)?;
        match attrs.first() {
            Some(('v', v)) => Ok(ServerFinal::Verifier(decode_key(SERVER_FINAL, v)?)),
            Some(('e', e)) => Ok(ServerFinal::Error((*e).to_string())),
            _ => Err(malformed(
                SERVER_FINAL,
                "expected v=<signature> or e=<error>",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_both_ways() {
        assert_eq!(encode_name("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(sasl_name(CLIENT_FIRST, "a=2Cb=3Dc"), Ok("a,b=c".into()));
        assert!(sasl_name(CLIENT_FIRST, "a=2").is_err());
        assert!(sasl_name(CLIENT_FIRST, "").is_err());
    }

    #[test]
    fn client_first_grammar() {
        let m = ClientFirst::parse(b"n,,n=user,r=abc").expect("valid");
        assert_eq!(
            (m.gs2_header.as_str(), m.username.as_str()),
            ("n,,", "user")
        );
        assert_eq!(m.bare, "n=user,r=abc");
        assert_eq!(
            ClientFirst::parse(b"p=tls-unique,,n=user,r=abc").map(|_| ()),
            Err(ScramError::ChannelBindingUnsupported)
        );
        assert!(ClientFirst::parse(b"n,,r=abc,n=user").is_err());
        assert!(ClientFirst::parse(b"n,,m=x,n=user,r=abc").is_err());
        assert!(ClientFirst::parse(b"n,,n=user,r=a,b").is_err());
        assert!(ClientFirst::parse(&[b'n', b',', b',', 0xff]).is_err());
    }
}
