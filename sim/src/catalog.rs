//! The simulated catalog API.
