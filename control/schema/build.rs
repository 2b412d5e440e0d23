//! Compiles the schemas with the embedded (WebAssembly) capnp compiler, so a
//! build needs no system `capnp` binary, then generates Rust with capnpc.

fn main() {
    let schemas = [
        "error.capnp",
        "kv.capnp",
        "iam.capnp",
        "raft.capnp",
        "buckets.capnp",
        "volumes.capnp",
        "lb.capnp",
    ];
    let mut command = capnpc_embedded::CompileCommand::new();
    for schema in schemas {
        println!("cargo:rerun-if-changed={schema}");
        command.file(schema);
    }
    let request = command
        .src_prefix(".")
        .compile()
        .expect("capnp schemas compile");
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(out_dir)
        .run(&request[..])
        .expect("capnpc generates Rust from the schemas");
}
