#!/usr/bin/env bash
# Lays out the image's build context in DIR: the static binary and a root
# file system with the collider user and its directories.
#   deploy/prepare-context.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
ctx="$1"
mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/data" "$ctx/rootfs/inbox" "$ctx/rootfs/tmp"
CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo \
  -ldflags '-s -w -linkmode external -extldflags "-static"' \
  -o "$ctx/collider" ./cmd/collider 2> >(grep -v -e 'statically linked applications requires' -e 'in function' >&2)
printf 'root:x:0:0:root:/:/collider\ncollider:x:10001:10001:collider:/data:/collider\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\ncollider:x:10001:\n' > "$ctx/rootfs/etc/group"
