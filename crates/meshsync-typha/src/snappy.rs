//! The snappy framing format.
