//! `lext`: build, check, package and run AWS Lambda extensions; `publish`
//! and `invoke` are handed to `lext-aws` (see the `lext_cli` library).

fn main() -> std::process::ExitCode {
    lext_cli::main()
}
