//! Typed settings, read once from the environment; secrets never print.
