//! The label source a selector is evaluated against.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

/// A read-only map from label key to value. A missing key is different from an empty value.
pub trait Labels {
    /// The value of `key`, or `None` when the label is absent.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}
