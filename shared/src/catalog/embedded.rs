//! The embedded (SQLite) catalog adapter.
