//! Load and latency harness for the Kommutator hub (being written).

fn main() {
    eprintln!("kommutator-load: not yet written");
}
