#!/usr/bin/env bash
# Kept at this path for the docs that name it: the GPU check lives in benchmarks/ (benchmarks/README.md).
exec bash "$(dirname "$0")/../benchmarks/gpu_check.sh" "$@"
