#![no_main]

// The entry function lives in fuzz/wire.rs, shared with keyhold-proto's
// tests/fuzz_corpus.rs (keyhold-core, home of the other entry functions,
// does not depend on keyhold-proto).
#[path = "../wire.rs"]
mod wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| wire::wire(data));
