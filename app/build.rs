//! Tells the code whether this build is a split WASM build (`cargo leptos … --split`).
//!
//! The picture editor is a lazily loaded WASM module in a split build and ordinary code in every
//! other one (`src/editor/lazy.rs`). cargo-leptos 0.3.10 has no setting for `--split`, only the
//! flag, but when it splits it adds `-Clink-args=--emit-relocs` to the WASM build's RUSTFLAGS
//! (its `src/config/project.rs`): the splitter needs the relocations. So a WASM build with that
//! flag sets `cfg(split_wasm)`; any other build (plain `cargo leptos watch`, native tests, the
//! server) compiles the editor in, and its page hydrates.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(split_wasm)");
    // Cargo keeps the script's result per set of flags (checked with cargo 1.95: a split and a
    // plain build each get their own run, and switching back and forth flips the cfg); these
    // make the dependency on the flags explicit rather than a property of cargo's hashing. And
    // with any rerun line, a change elsewhere in the crate does not re-run the script.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS",
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
    }
    println!("cargo::rerun-if-changed=build.rs");

    let wasm = env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|family| family == "wasm");
    // The flags of the crate being built, separated by 0x1f (cargo's encoding).
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let emits_relocations = flags
        .split('\x1f')
        .any(|flag| flag.contains("--emit-relocs"));
    if wasm && emits_relocations {
        println!("cargo::rustc-cfg=split_wasm");
    }
}
