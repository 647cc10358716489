//! Compiles our minimal etcd `.proto` without a system `protoc` (a build needs nothing but
//! cargo): `protox` parses it, `tonic-prost-build` emits messages and clients with `bytes::Bytes` for bytes fields.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let fds = protox::compile(["etcd/etcd.proto"], [proto_root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed={proto_root}/etcd");
    Ok(())
}
