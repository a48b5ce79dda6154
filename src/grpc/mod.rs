//! The gRPC face of segd (`segd.v1.SegmentService`, `segd.v1.CustomerService`): generated
//! types, conversions between them and the application's inputs and results, the one
//! error-to-status mapping, and the service adapters, which only translate and call
//! [`crate::app::App`]. Nothing else in the crate but [`crate::server`] imports tonic or
//! prost.
//!
//! - [`pb`]: code generated from `proto/segd/v1/segd.proto` and its descriptor set.
//! - [`codec`]: prost decoding that answers INVALID_ARGUMENT for undecodable requests.
//! - [`convert`]: proto <-> core (predicate trees, literals, plans, schema).
//! - [`status`]: [`status::ServiceError`] and its exhaustive mapping to gRPC codes.
//! - [`service`]: what both services share ([`service::Ctx`]: the app and the per-RPC
//!   metrics) and the `SegmentService` implementation.
//! - [`customers`]: the `CustomerService` implementation (upserts, deletes, reads).
//! - [`watch`]: an application subscription as the `WatchSegments` response stream.

pub mod codec;
pub mod convert;
pub mod customers;
pub mod service;
pub mod status;
pub mod watch;

/// Generated from `proto/segd/v1/segd.proto`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("segd.v1");

    /// The encoded descriptors of segd.v1, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("segd_descriptor");
}
