//! The `port-app-config` model and the jq mapping engine (jaq): compile once, evaluate per item.

mod jq;
mod quotes;
mod regex_cache;

pub use quotes::rewrite_single_quotes;
