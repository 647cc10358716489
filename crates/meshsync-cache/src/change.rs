//! [`Change`]: what happened to a key, as agents see it. Its own module because both the
//! breadcrumbs (whose deltas carry one) and every front end's encoding (which puts it on the wire)
//! use it.

/// The kind of a change, as agents see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    Updated,
    Deleted,
}
