//! The simulated Azure DevOps organisation.
