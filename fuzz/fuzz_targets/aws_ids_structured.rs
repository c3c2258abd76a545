//! Well-formed ARN parts (and splices into them) built with `arbitrary`.
#![no_main]

libfuzzer_sys::fuzz_target!(|parts: aeo_fuzz::IdParts| aeo_fuzz::aws_ids_structured(&parts));
