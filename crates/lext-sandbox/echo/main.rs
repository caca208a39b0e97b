//! The built-in echo runtime as a program of its own: `build.rs` compiles
//! this file with `rustc` alone (it uses the standard library only), and the
//! sandbox embeds the result. See `runtime.rs`.

#[path = "runtime.rs"]
mod runtime;

fn main() -> std::process::ExitCode {
    match runtime::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The same line `lext __echo-runtime` prints.
            eprintln!("error: echo runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
