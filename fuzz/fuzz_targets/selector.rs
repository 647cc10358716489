//! Calico's selector language: parsing never panics, and the canonical form of anything that
//! parses parses again to the same canonical form and ID (the property the cache and agents rely
//! on to share selectors).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = meshsync_selector::parse(text) {
        let canonical = selector.canonical();
        let again = meshsync_selector::parse(&canonical)
            .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
        assert_eq!(again.canonical(), canonical, "canonical form is not stable");
        assert_eq!(again.unique_id(), selector.unique_id(), "unique id changed");
    }
});
