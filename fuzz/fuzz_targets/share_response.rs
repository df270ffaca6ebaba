#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyhold_core::fuzz::share_response(data));
