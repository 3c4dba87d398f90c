#!/usr/bin/env bash
# Builds the statically linked collider and the FROM-scratch image around it.
#   deploy/build-image.sh [TAG]      (default collider:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-collider:latest}"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
deploy/prepare-context.sh "$ctx"
docker build -t "$tag" -f deploy/Dockerfile "$ctx"
docker image inspect "$tag" --format '{{.Size}}' | awk -v t="$tag" '{printf "%s: %.1f MB\n", t, $1/1e6}'
