#!/usr/bin/env bash
# Installs missing build packages, then configures and builds one CMake preset.
# Usage: scripts/build.sh [PRESET]   (release by default; see CMakePresets.json)
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}
scripts/setup.sh build
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
