//! Arbitrary text as a region, KMS key reference and IAM role ARN.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aeo_fuzz::aws_ids(data));
