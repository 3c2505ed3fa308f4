//! Compiles `proto/` into Rust. Uses the vendored `protoc` unless `PROTOC` is set, so a fresh machine
//! needs no protobuf compiler installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("flowgate/compliance/v1/compliance.proto"),
        root.join("flowgate/policy/v1/policy.proto"),
        root.join("flowgate/keys/v1/keys.proto"),
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    tonic_prost_build::configure().compile_with_config(config, &files, &[root])?;
    Ok(())
}
