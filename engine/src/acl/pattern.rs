//! A rule's topic filter: split into levels, placeholders parsed, checked against MQTT's rules for
//! filters once at load time so that checks never have to.

use super::{Level, Piece};

/// A mistake in a topic filter: the offset (in characters) of the offending character, and what
/// is wrong.
pub(super) type PatternError = (usize, String);

/// The levels of `text`, a topic filter with placeholders.
///
/// # Errors
/// An empty filter, `#` anywhere but as the whole last level, `+` anywhere but as a whole level,
/// NUL, or `%` not starting `%c`, `%u`, `%t` or `%%`.
pub(super) fn parse(text: &str) -> Result<Vec<Level>, PatternError> {
    if text.is_empty() {
        return Err((0, "expected a topic filter, found an empty string".into()));
    }
    let count = text.split('/').count();
    let mut levels = Vec::with_capacity(count);
    let mut start = 0;
    for (index, level) in text.split('/').enumerate() {
        levels.push(match level {
            "+" => Level::Plus,
            "#" if index + 1 == count => Level::Hash,
            "#" => {
                return Err((
                    start,
                    "expected \"#\" only as the last level, found more levels after it".into(),
                ))
            }
            _ => Level::Text(pieces(level).map_err(|(at, message)| (start + at, message))?),
        });
        start += level.chars().count() + 1;
    }
    Ok(levels)
}

/// The pieces of a level that is not a lone wildcard; offsets in errors are within the level.
fn pieces(level: &str) -> Result<Vec<Piece>, PatternError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = level.chars().enumerate();
    while let Some((at, c)) = chars.next() {
        let placeholder = match c {
            '+' | '#' => {
                return Err((
                    at,
                    format!("expected \"{c}\" alone in its level, found it inside {level:?}"),
                ))
            }
            '\0' => return Err((at, "expected a topic character, found NUL".into())),
            '%' => match chars.next() {
                Some((_, '%')) => {
                    literal.push('%');
                    continue;
                }
                Some((_, 'c')) => Piece::ClientId,
                Some((_, 'u')) => Piece::Username,
                Some((_, 't')) => Piece::Tenant,
                other => {
                    let found = other.map_or("\"%\" at the end of the level".into(), |(_, c)| {
                        format!("\"%{}\"", c.escape_debug())
                    });
                    return Err((
                        at,
                        format!(
                            "expected a placeholder (%c client id, %u user name, %t tenant, \
                             %% a literal %), found {found}"
                        ),
                    ));
                }
            },
            c => {
                literal.push(c);
                continue;
            }
        };
        if !literal.is_empty() {
            out.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        out.push(placeholder);
    }
    // An empty level (as in `a//b`) is one empty literal, so every text level has a piece.
    if !literal.is_empty() || out.is_empty() {
        out.push(Piece::Literal(literal));
    }
    Ok(out)
}
