//! Key paths of the v1 model and their escaping (`KeyToDefaultPath`).
