//! All integration tests in one binary, so they link once (2 cores).

mod common;
mod differential;
mod durability;
mod errors;
mod grpc;
mod http;
mod loading;
mod mutations;
mod queries;
mod realtime;
