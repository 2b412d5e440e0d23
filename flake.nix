{
  description = "PhotonCloud: a small thread-per-core cloud in one Rust workspace";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        photon = pkgs.rustPlatform.buildRustPackage {
          pname = "photon";
          version = "0.1.0";
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "--package" "photon" ];
          # etcd-client (bench peer) compiles etcd's protobufs at build time.
          nativeBuildInputs = [ pkgs.protobuf ];
          # The test suite starts real `photon` processes, binds ports and pins
          # threads; it runs in CI through scripts/test.sh, not in the sandbox.
          doCheck = false;
          meta = {
            description = "PhotonCloud node, CLI and benchmarks in one binary";
            mainProgram = "photon";
            platforms = pkgs.lib.platforms.linux;
          };
        };
        default = photon;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            cargo
            rustc
            rustfmt
            clippy
            cargo-nextest
            curl
            protobuf
            etcd
            strace
            perf
          ];
          RUST_LOG = "info";
        };
      });
    };
}
