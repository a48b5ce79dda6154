//! All integration tests in one binary, so they link once (2 cores).

mod boundary;
mod cli;
mod cluster;
mod common;
mod decide;
mod differential;
mod durability;
mod errors;
mod gamify;
mod golden;
mod grpc;
mod http;
mod loading;
mod member_stream;
mod mutations;
mod queries;
mod realtime;
mod replication;
mod security;
mod validation;
mod write_faults;
