//! webhook function handler.
