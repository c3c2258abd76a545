//! Arbitrary bytes as the body of every Atlas answer the client decodes (see `aeo_fuzz::atlas_response`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aeo_fuzz::atlas_response(data));
