{
  # A dev shell with pixi in it, for NixOS: `nix develop -c pixi run serve`.
  # Not exercised by CI (Nix cannot fetch its packages on the CI machines), so there is no flake.lock
  # yet: the first `nix develop` (or `nix flake lock`) writes one; commit it to pin nixpkgs.
  description = "npcbench: serve and benchmark LLM inference for game NPCs";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.pixi ];
          # pixi's Python wheels (torch, vLLM) expect an FHS-style libstdc++.
          LD_LIBRARY_PATH = pkgs.lib.makeLibraryPath [ pkgs.stdenv.cc.cc.lib pkgs.zlib ];
        };
      });
    };
}
