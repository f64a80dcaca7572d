//! The `hark` binary: everything happens in [`hark::cli`].

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    hark::cli::main()
}
