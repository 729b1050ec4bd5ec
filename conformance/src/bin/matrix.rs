//! `cicada-matrix`: prints the conformance matrix coverage (covered / total per specification) and
//! lists the uncovered statements. Exits non-zero if a reference does not resolve.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Prints conformance coverage per specification.
#[derive(Debug, Parser)]
#[command(name = "cicada-matrix", version, about)]
struct Cli {
    /// The repository root.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    root: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cicada_conformance::matrix::report(&cli.root) {
        Ok((text, coverage)) => {
            print!("{text}");
            if coverage.iter().any(|c| !c.broken.is_empty()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("cicada-matrix: {e}");
            ExitCode::from(2)
        }
    }
}
