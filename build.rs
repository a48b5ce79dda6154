//! Compiles proto/segd/v1/segd.proto into the tonic service and a file descriptor set
//! (served by gRPC reflection), and proto/segd/log/v1/log.proto (the on-disk record
//! format) into plain prost messages.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // An explicit PROTOC (e.g. Debian's protobuf-compiler) wins; otherwise the vendored
    // binary, so a fresh machine builds with nothing but cargo.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("segd_descriptor.bin"))
        // Undecodable requests are the caller's fault: INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::grpc::codec::SegdCodec")
        .compile_protos(
            &[
                "proto/segd/v1/segd.proto",
                "proto/segd/v1/decide.proto",
                "proto/segd/v1/gamify.proto",
                "proto/segd/v1/leaderboard.proto",
                "proto/segd/v1/replica.proto",
            ],
            &["proto"],
        )?;
    // proto3 JSON (serde) for the same messages: the HTTP API's bodies (src/http). Fields
    // at their default are written too (`"count": "0"`, `"isMember": false`), as
    // grpcurl -emit-defaults shows them: HTTP clients need not know proto3's defaults.
    let descriptors = std::fs::read(out.join("segd_descriptor.bin"))?;
    pbjson_build::Builder::new().register_descriptors(&descriptors)?.emit_fields().build(&[".segd.v1"])?;
    // Storage schema: messages only, and not in the reflection descriptor set (it is not
    // part of the API).
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_protos(&["proto/segd/log/v1/log.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
