//! The file datastore's manifest parser (YAML and JSON, multi-document, `kind: List`): never
//! panics, and every object it accepts is a JSON object that passes the drivers' validation for
//! its own key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshsync_datastore::validate::{ValueLimits, validate_value};

fuzz_target!(|data: &[u8]| {
    let (name, bytes) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => ("fuzz.yaml", rest),
        Some((_, rest)) => ("fuzz.json", rest),
        None => return,
    };
    if let Ok(objects) = meshsync_datastore::file::parse_manifest(name, bytes) {
        for (key, value) in objects {
            validate_value(&key, &value, &ValueLimits::default())
                .unwrap_or_else(|e| panic!("accepted an invalid value for {key:?}: {e}"));
        }
    }
});
