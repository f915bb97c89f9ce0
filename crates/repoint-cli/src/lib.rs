//! The `repoint` command line's definition, as a library so that the
//! documentation generator (`cargo xtask codegen`, which writes
//! `docs/cli.md` and the man pages) reads the very definition the binary
//! parses. Everything else of the command is in the binary (`main.rs`).

pub mod args;
