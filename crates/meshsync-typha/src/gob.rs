//! Go `encoding/gob`, the subset Typha needs.
