//! The Port REST API adapter.
