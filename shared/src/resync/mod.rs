//! The full resync pass: kinds in config order, page by page, then the stale-entity plan.
