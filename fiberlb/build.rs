//! Embeds FiberLB's XDP objects when scripts/build-ebpf.sh has built them
//! (they need the nightly toolchain and bpf-linker, which plain `cargo
//! build` does not). Without them the crate still builds, and loading the
//! data plane says how to build them.
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fiberlb_bpf)");
    println!("cargo::rerun-if-env-changed=FIBERLB_BPF_DIR");
    let dir = match std::env::var_os("FIBERLB_BPF_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
            .join("ebpf/target/bpfel-unknown-none/release"),
    };
    let lb = dir.join("fiberlb-lb");
    let decap = dir.join("fiberlb-decap");
    println!("cargo::rerun-if-changed={}", lb.display());
    println!("cargo::rerun-if-changed={}", decap.display());
    if lb.is_file() && decap.is_file() {
        println!("cargo::rustc-cfg=fiberlb_bpf");
        println!("cargo::rustc-env=FIBERLB_LB_OBJ={}", lb.display());
        println!("cargo::rustc-env=FIBERLB_DECAP_OBJ={}", decap.display());
    }
}
