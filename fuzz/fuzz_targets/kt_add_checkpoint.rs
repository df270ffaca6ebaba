#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| keyhold_core::fuzz::kt_add_checkpoint(data));
