//! The per-requirement conformance matrix: every normative statement of a specification with the tests
//! that cover it (`conformance/matrix/*.toml`, format in `conformance/matrix/FORMAT.md`).
//!
//! Coverage is computed, not declared: a reference counts only if it resolves (the test function exists
//! in the named file, the trace exists), and traces add themselves through their `covers-SPEC` headers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::trace::Trace;

/// Who a statement obliges.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    /// The server.
    Server,
    /// The client.
    Client,
    /// Either side.
    Both,
}

/// One normative statement.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// `MQTT-x.y.z-n`.
    pub id: String,
    /// Who it obliges.
    pub party: Party,
    /// The specification's sentence.
    pub text: String,
    /// References to the tests covering it.
    #[serde(default)]
    pub tests: Vec<String>,
    /// Why it is uncovered, or how a client rule is checked from the broker side.
    #[serde(default)]
    pub note: Option<String>,
}

/// One specification's matrix.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// `MQTT 3.1.1` or `MQTT 5.0`.
    pub spec: String,
    /// Where the statements come from.
    #[serde(default)]
    pub source: Option<String>,
    /// Every statement, in the specification's order.
    #[serde(rename = "statement")]
    pub statements: Vec<Statement>,
}

/// A matrix that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid matrix.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A statement id appears twice.
    #[error("{path}: statement {id} is listed twice")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// A trace cannot be read.
    #[error("{path}: {message}")]
    Trace {
        /// The trace.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The specifications with a matrix: (short name used in `covers-` headers, file name).
pub const SPECS: [(&str, &str); 2] = [("3.1.1", "mqtt-3.1.1.toml"), ("5.0", "mqtt-5.0.toml")];

impl Matrix {
    /// Loads `path`.
    pub fn load(path: &Path) -> Result<Matrix, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let matrix: Matrix = toml::from_str(&text).map_err(|source| MatrixError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let mut seen = BTreeSet::new();
        for s in &matrix.statements {
            if !seen.insert(s.id.as_str()) {
                return Err(MatrixError::Duplicate {
                    path: path.to_path_buf(),
                    id: s.id.clone(),
                });
            }
        }
        Ok(matrix)
    }
}

/// Checks that `reference` names something that exists under `root` (the repository).
pub fn resolve(root: &Path, reference: &str) -> Result<(), String> {
    if let Some(name) = reference.strip_prefix("trace:") {
        let path = root
            .join("conformance/traces")
            .join(format!("{name}.trace"));
        return if path.is_file() {
            Ok(())
        } else {
            Err(format!("no trace {}", path.display()))
        };
    }
    let (file, name) = reference
        .split_once("::")
        .ok_or_else(|| format!("{reference:?} is neither `trace:NAME` nor `path::name`"))?;
    let text =
        std::fs::read_to_string(root.join(file)).map_err(|e| format!("cannot read {file}: {e}"))?;
    let found = if file.ends_with(".rs") {
        text.contains(&format!("fn {name}("))
    } else {
        text.contains(name)
    };
    if found {
        Ok(())
    } else {
        Err(format!("{file} has no test {name}"))
    }
}

/// What a matrix covers.
#[derive(Debug)]
pub struct Coverage {
    /// The specification.
    pub spec: String,
    /// Statements listed.
    pub total: usize,
    /// Statements with at least one reference, every one resolving.
    pub covered: usize,
    /// Uncovered statements: (id, note).
    pub uncovered: Vec<(String, String)>,
    /// References that do not resolve: (id, reference, why).
    pub broken: Vec<(String, String, String)>,
}

impl Coverage {
    /// Covered share in percent.
    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.covered as f64 / self.total as f64
        }
    }
}

/// For each spec short name, statement id → traces covering it, from the traces' `covers-` headers.
pub fn trace_covers(
    root: &Path,
) -> Result<BTreeMap<String, BTreeMap<String, Vec<String>>>, MatrixError> {
    let dir = root.join("conformance/traces");
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "trace"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| MatrixError::Read {
            path: path.clone(),
            source,
        })?;
        let trace = Trace::parse(&text).map_err(|e| MatrixError::Trace {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (spec, _) in SPECS {
            for id in trace.covers(spec) {
                out.entry(spec.to_string())
                    .or_default()
                    .entry(id)
                    .or_default()
                    .push(format!("trace:{name}"));
            }
        }
    }
    Ok(out)
}

/// Computes the coverage of `matrix`, adding `from_traces` (statement id → trace references).
pub fn coverage(
    root: &Path,
    matrix: &Matrix,
    from_traces: &BTreeMap<String, Vec<String>>,
) -> Coverage {
    let mut c = Coverage {
        spec: matrix.spec.clone(),
        total: matrix.statements.len(),
        covered: 0,
        uncovered: Vec::new(),
        broken: Vec::new(),
    };
    for s in &matrix.statements {
        let refs: Vec<&String> = s
            .tests
            .iter()
            .chain(from_traces.get(&s.id).into_iter().flatten())
            .collect();
        let mut ok = !refs.is_empty();
        for r in refs {
            if let Err(why) = resolve(root, r) {
                ok = false;
                c.broken.push((s.id.clone(), r.clone(), why));
            }
        }
        if ok {
            c.covered += 1;
        } else {
            c.uncovered
                .push((s.id.clone(), s.note.clone().unwrap_or_default()));
        }
    }
    c
}

/// The statement ids traces claim that no matrix lists (typos in `covers-` headers).
pub fn unknown_trace_ids(
    matrix: &Matrix,
    from_traces: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let known: BTreeSet<&str> = matrix.statements.iter().map(|s| s.id.as_str()).collect();
    from_traces
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .cloned()
        .collect()
}

/// The coverage report of every specification, as the `cicada-matrix` command prints it.
pub fn report(root: &Path) -> Result<(String, Vec<Coverage>), MatrixError> {
    use std::fmt::Write as _;
    let traces = trace_covers(root)?;
    let empty = BTreeMap::new();
    let mut text = String::new();
    let mut all = Vec::new();
    for (short, file) in SPECS {
        let matrix = Matrix::load(&root.join("conformance/matrix").join(file))?;
        let from_traces = traces.get(short).unwrap_or(&empty);
        let c = coverage(root, &matrix, from_traces);
        let _ = writeln!(
            text,
            "{}: {} / {} statements covered ({:.1}%)",
            c.spec,
            c.covered,
            c.total,
            c.percent()
        );
        for (id, note) in &c.uncovered {
            let _ = writeln!(text, "  uncovered {id}: {note}");
        }
        for (id, r, why) in &c.broken {
            let _ = writeln!(text, "  BROKEN {id} -> {r}: {why}");
        }
        for id in unknown_trace_ids(&matrix, from_traces) {
            let _ = writeln!(text, "  UNKNOWN id {id} in a trace's covers-{short} header");
        }
        all.push(c);
    }
    Ok((text, all))
}
