//! The ACL and ban files: loaded at start and on SIGHUP, handed to the engine, which enforces them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cicada_engine::acl::Acl;
use cicada_engine::limits::Ban;
use cicada_engine::Instant;

/// Why a policy file cannot be used; names the file, the key and the place.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read `acl.file` {path}: {source}")]
    ReadAcl {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`acl.file` {path}, {source} (see docs/acl.md)")]
    Acl {
        path: PathBuf,
        source: cicada_engine::acl::AclError,
    },
    #[error("`bans.file`: {0}")]
    Bans(#[from] crate::banfile::BanFileError),
}

/// Reads and compiles the ACL file.
pub fn load_acl(path: &Path) -> Result<Arc<Acl>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::ReadAcl {
        path: path.to_path_buf(),
        source,
    })?;
    let acl = Acl::parse(&text).map_err(|source| PolicyError::Acl {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(acl))
}

/// The ban file's entries as the engine takes them: expiry times become engine instants (the
/// engine's time is Unix time).
pub fn engine_bans(entries: &[crate::banfile::BanEntry]) -> Vec<Ban> {
    entries
        .iter()
        .map(|e| Ban {
            target: e.target.clone(),
            until: e.until.map(|t| {
                Instant::from_duration(t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
            }),
            reason: e.reason.clone(),
        })
        .collect()
}
