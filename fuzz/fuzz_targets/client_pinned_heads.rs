#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyhold_client::fuzz::client_pinned_heads(data));
