//! Typha's messages.
