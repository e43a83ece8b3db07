//! processor function handler.
