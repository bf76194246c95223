#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh), then
# runs the whole suite, formatting and lint checks. Tests need the VGG19
# weights, which setup.sh puts in the default location.
set -euo pipefail
cd "$(dirname "$0")/.."
STYLESTREAM_TEST_TOOLS=1 scripts/setup.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --release
