//! The `boltz` command. Parsing, progress and printing only; the maths is in the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
