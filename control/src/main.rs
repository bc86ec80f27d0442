//! `lab` binary: parse arguments, set up logging, hand over to [`lab::cli`], map the result
//! to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    lab::cli::main()
}
