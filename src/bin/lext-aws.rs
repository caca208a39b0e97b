//! `lext-aws`: every `lext` command, with `publish` and `invoke` (the ones
//! that call AWS) in process. `lext` runs it for those two.

fn main() -> std::process::ExitCode {
    lext_cli::aws_main()
}
