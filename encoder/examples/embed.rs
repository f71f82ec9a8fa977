//! Prints the embedding of each argument, one line of 384 numbers per text.
//!
//! ```text
//! cargo run --release --example embed -- [--models DIR] [--passage] TEXT...
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use kommutator_encoder::{Encoder, Kind};

fn main() -> ExitCode {
    let mut dir = PathBuf::from("../models/e5");
    let mut kind = Kind::Query;
    let mut texts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--models" => match args.next() {
                Some(d) => dir = PathBuf::from(d),
                None => {
                    eprintln!("--models needs a folder");
                    return ExitCode::FAILURE;
                }
            },
            "--passage" => kind = Kind::Passage,
            _ => texts.push(a),
        }
    }
    let encoder = match Encoder::load(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("embed: {e}");
            return ExitCode::FAILURE;
        }
    };
    for t in &texts {
        let v = encoder.embed(t, kind);
        let line: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
        println!("{}", line.join(" "));
    }
    ExitCode::SUCCESS
}
