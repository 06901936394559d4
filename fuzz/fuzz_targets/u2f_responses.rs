#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ctap_fuzz::u2f_responses(data));
