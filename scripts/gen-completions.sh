#!/bin/sh
# Regenerates completions/ from the binary's own clap definition. tests/cli.rs fails when the committed
# files differ from what the binary prints, so run this after changing any flag.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin rtctl
bin="${CARGO_TARGET_DIR:-target}/debug/rtctl"
"$bin" completions bash > completions/rtctl.bash
"$bin" completions zsh > completions/_rtctl
"$bin" completions fish > completions/rtctl.fish
"$bin" completions powershell > completions/_rtctl.ps1
"$bin" completions elvish > completions/rtctl.elv
echo "completions/ regenerated"
