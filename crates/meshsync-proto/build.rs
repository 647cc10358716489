//! Generates the meshsync protocol code without a system `protoc`: `protox` parses the `.proto`,
//! `tonic-prost-build` emits messages and the client, and `tonic-build`'s manual builder emits the
//! server with a pre-encoded output type so one encoded frame is shared by every stream.

use tonic_build::manual::{Method, Service};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let fds = protox::compile(["meshsync/v1/sync.proto"], [proto_root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".meshsync.v1.Update.value")
        .bytes(".meshsync.v1.CompressedBatch.data")
        .compile_fds(fds)?;

    let codec = "tonic_prost::ProstCodec";
    let service = Service::builder()
        .name("Sync")
        .package("meshsync.v1")
        .method(
            Method::builder()
                .name("subscribe")
                .route_name("Subscribe")
                .input_type("crate::SubscribeRequest")
                .output_type("crate::Frame")
                .codec_path(codec)
                .server_streaming()
                .build(),
        )
        .method(
            Method::builder()
                .name("status")
                .route_name("Status")
                .input_type("crate::StatusRequest")
                .output_type("crate::StatusResponse")
                .codec_path(codec)
                .build(),
        )
        .method(
            Method::builder()
                .name("report")
                .route_name("Report")
                .input_type("crate::AgentReport")
                .output_type("crate::ReportAck")
                .codec_path(codec)
                .build(),
        )
        .build();
    tonic_build::manual::Builder::new()
        .build_client(false)
        .compile(&[service]);
    println!("cargo:rerun-if-changed={proto_root}");
    Ok(())
}
