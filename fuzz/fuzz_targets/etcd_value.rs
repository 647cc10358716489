//! What the etcd driver does with a key and a value from the wire: classify the key by Calico's
//! layout and validate the value for it. Never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshsync_datastore::layout::{KeyClass, classify_key};
use meshsync_datastore::validate::{ValueLimits, validate_value};
use meshsync_model::ResourceKey;

fuzz_target!(|data: &[u8]| {
    // First line: the key; the rest: the value.
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (key, value) = data.split_at(split);
    let value = value.get(1..).unwrap_or_default();
    let key = String::from_utf8_lossy(key);
    if let KeyClass::Served(kind, namespace, name) = classify_key("/calico", &key) {
        let key = ResourceKey::new("", kind, &namespace, &name);
        let _ = validate_value(&key, value, &ValueLimits::default());
    }
    // Any key at all, against a fixed one.
    let fixed = ResourceKey::new("", "WorkloadEndpoint", "default", "w");
    let _ = validate_value(&fixed, data, &ValueLimits::default());
});
