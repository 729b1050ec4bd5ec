//! The conformance matrix holds: every reference resolves, every id a trace claims exists, and each
//! specification is covered at 90% or more.

use std::path::Path;

use cicada_conformance::matrix::{report, trace_covers, unknown_trace_ids, Matrix, SPECS};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn every_reference_resolves_and_coverage_is_at_least_90_percent() {
    let (text, coverage) = report(root()).unwrap_or_else(|e| panic!("{e}"));
    for c in &coverage {
        assert!(c.broken.is_empty(), "broken references:\n{text}");
        assert!(c.percent() >= 90.0, "{} under 90%:\n{text}", c.spec);
    }
}

#[test]
fn traces_claim_only_statements_the_matrix_lists() {
    let covers = trace_covers(root()).unwrap_or_else(|e| panic!("{e}"));
    for (short, file) in SPECS {
        let matrix = Matrix::load(&root().join("conformance/matrix").join(file))
            .unwrap_or_else(|e| panic!("{e}"));
        let empty = Default::default();
        let unknown = unknown_trace_ids(&matrix, covers.get(short).unwrap_or(&empty));
        assert!(
            unknown.is_empty(),
            "covers-{short} ids not in {file}: {unknown:?}"
        );
    }
}
