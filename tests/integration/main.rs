//! All integration tests in one binary, so they link once (2 cores).

mod common;
mod differential;
mod durability;
mod errors;
mod grpc;
mod loading;
mod mutations;
mod queries;
mod realtime;
mod write_faults;
