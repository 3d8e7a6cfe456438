//! The `s2s-guard` command; see the library for the commands.

use std::process::ExitCode;

use s2s_guard_cli::{run, Fail};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(code) => code,
        Err(Fail(msg)) => {
            eprintln!("s2s-guard: {msg}");
            ExitCode::from(2)
        }
    }
}
