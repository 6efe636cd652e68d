#!/usr/bin/env bash
# Sets up eqprop and runs the main job on its built-in default: trains a holomorphic-EP
# network on the Yin-Yang dataset (generated, no files needed) and prints its accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec ./build/eqprop train "$@"
