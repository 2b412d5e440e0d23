//! Compiles every `*.capnp` in this folder with the embedded (WebAssembly)
//! capnp compiler, so a build needs no system `capnp` binary, generates Rust
//! with capnpc, and writes `schemas.rs`: one module per schema and
//! `SCHEMA_SOURCES`. A new schema file needs no other edit here.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut schemas: Vec<String> = std::fs::read_dir(&dir)
        .expect("the schema folder is readable")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".capnp"))
        .collect();
    schemas.sort();
    let mut command = capnpc_embedded::CompileCommand::new();
    for schema in &schemas {
        println!("cargo:rerun-if-changed={schema}");
        command.file(schema);
    }
    let request = command
        .src_prefix(".")
        .compile()
        .expect("capnp schemas compile");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    capnpc::codegen::CodeGenerationCommand::new()
        .output_directory(&out_dir)
        .run(&request[..])
        .expect("capnpc generates Rust from the schemas");
    std::fs::write(out_dir.join("schemas.rs"), modules(&dir, &schemas))
        .expect("OUT_DIR is writable");
}

/// `pub mod <name>_capnp { ... }` for every schema, and the schema texts.
fn modules(dir: &std::path::Path, schemas: &[String]) -> String {
    let mut out = String::new();
    for schema in schemas {
        let module = format!("{}_capnp", schema.trim_end_matches(".capnp"));
        let _ = writeln!(
            out,
            "pub mod {module} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{module}.rs\")); }}"
        );
    }
    let _ = writeln!(
        out,
        "/// Every schema file and its text (what `photon api schemas` writes).\n\
         pub const SCHEMA_SOURCES: [(&str, &str); {}] = [",
        schemas.len()
    );
    for schema in schemas {
        let path = dir.join(schema);
        let _ = writeln!(
            out,
            "    ({schema:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    out
}
