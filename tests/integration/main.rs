//! All integration tests in one binary, so they link once (2 cores).

mod achieve;
mod boundary;
mod cli;
mod cluster;
mod common;
mod decide;
mod decide_blast;
mod differential;
mod durability;
mod errors;
mod gamify;
mod gamify_ops;
mod golden;
mod golden_gamify;
mod grpc;
mod http;
mod leaderboard;
mod loading;
mod member_stream;
mod mutations;
mod queries;
mod realtime;
mod replication;
mod security;
mod validation;
mod write_faults;
