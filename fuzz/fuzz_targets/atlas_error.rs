//! Arbitrary status, Retry-After and body of a failed Atlas call, mapped to `AtlasError`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aeo_fuzz::atlas_error(data));
