//! Keeps the `protoc-bin-vendored` crate in the build.
//!
//! etcd-client's build script compiles etcd's protobuf API with the `protoc` named by
//! `PROTOC`, which the workspace's `.cargo/config.toml` sets to `tools/protoc`: a script
//! that runs the binary this crate ships (cargo unpacks it beside etcd-client). Depending
//! on it here is what makes cargo fetch and unpack it; this script only says when the
//! platform has no vendored binary.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if let Err(error) = protoc_bin_vendored::protoc_bin_path() {
        println!(
            "cargo::warning={error}: building etcd-client needs a system protoc here (or PROTOC set)"
        );
    }
}
