//! The catalog storage engine with Port's semantics.
