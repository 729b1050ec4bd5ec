//! The `cicada-cli` binary: parses arguments and hands them to the library.

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = match cicada_cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors go to stderr with status 2; --help and --version to stdout with 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cicada-cli: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut out = std::io::stdout();
        cicada_cli::run(cli, &mut out).await
    });
    // A read of standard input cannot be cancelled; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cicada-cli: {e}");
            ExitCode::FAILURE
        }
    }
}
