//! The `port-app-config` model and the jq mapping engine (jaq): compile once, evaluate per item.
