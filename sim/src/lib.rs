//! Local servers for tests, the demo and benchmarks: an Azure DevOps organisation and a catalog.

pub mod ado;
pub mod catalog;
