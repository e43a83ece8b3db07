//! End-to-end flows across the functions, the simulator and the catalog server, on real HTTP.

mod actions;
mod entra;
mod faults;
mod flow;
mod helpers;
mod kinds;
mod kinds_cicd;
mod kinds_people;
mod kinds_proof;
mod live;
mod live_cicd;
mod live_content;
mod moto;
mod port_resources;
mod queue;
mod resync;
mod secrets;
mod server;
mod template;
mod tenants_dynamo;
