#!/usr/bin/env bash
# Writes the upgrade fixture of a collider release: builds COMMIT's binary
# in a temporary directory (the binary is never kept), lets it write a small
# store holding every kind of record the casebook keeps — a batch with its
# clues and leads, leads closed as confirmed, dismissed and referred, one
# accepted, one returned and reassigned, one left returned, audited views
# and a download, a second (empty) batch — and packs the store's two files
# (and a write-ahead log, if one was left) as
# testdata/stores/COMMIT/store.tar.gz. The upgrade test
# (cmd/collider/upgrade_test.go) opens every fixture here with the current
# collider. Write one before each change to the schema (sql/NNNN_*.sql),
# from the commit before it:
#
#     testdata/stores/write-fixture.sh $(git rev-parse HEAD)
set -euo pipefail
commit=${1:?usage: testdata/stores/write-fixture.sh COMMIT}
repo=$(git rev-parse --show-toplevel)
out=$repo/testdata/stores/$commit
work=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/src" "$out"
git -C "$repo" archive "$commit" | tar -x -C "$work/src"
(cd "$work/src" && go build -o "$work/collider" ./cmd/collider)
c() { "$work/collider" "$@"; }

c gen --out "$work/inbox" --settlements 3000 --seed 14 --bad >/dev/null
c run --data "$work/store" --inbox "$work/inbox" >/dev/null 2>&1 || [ $? = 3 ] # the bad deliveries fail alone
c users add --data "$work/store" --role province --name 省专班 | tail -1 >"$work/province"
c users add --data "$work/store" --role admin --name 运维 | tail -1 >"$work/admin"

port=$((20000 + RANDOM % 20000))
serve() {
  "$work/collider" serve --data "$work/store" --inbox "$work/inbox" --addr "127.0.0.1:$port" --schedule off >>"$work/serve.log" 2>&1 &
  srv=$!
  for _ in $(seq 1 100); do c health --addr "127.0.0.1:$port" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1
}
stop() { kill -TERM "$srv"; wait "$srv"; srv=; }
as() { local who=$1; shift; c client --server "http://127.0.0.1:$port" --token-file "$work/$who" "$@"; }

# The city with the most leads gets a bureau (users are added while the
# server is down: one process holds the store).
serve
city=$(as province leads | awk '!/^#/ && $2 !~ /0000$/ {n[$2]++} END {for (k in n) print n[k], k}' | sort -k1,1nr -k2 | head -1 | cut -d' ' -f2)
stop
c users add --data "$work/store" --role city --city "$city" --name "市医保局$city" | tail -1 >"$work/city"
serve
mapfile -t leads < <(as city leads --status new | awk '!/^#/ {print $1}' | head -6)
[ "${#leads[@]}" = 6 ] || { echo "city $city has ${#leads[@]} new leads, want 6" >&2; exit 1; }
as city act "${leads[0]}" accept >/dev/null
as city act "${leads[0]}" investigate >/dev/null
as city act "${leads[0]}" close --outcome confirmed --recovered 1234.5 --note "属实，已追回基金" >/dev/null
as city act "${leads[1]}" accept >/dev/null
as city act "${leads[1]}" investigate >/dev/null
as city act "${leads[1]}" close --outcome dismissed --note "死亡日期有误，已核实" >/dev/null
as city act "${leads[2]}" accept >/dev/null
as city act "${leads[2]}" investigate >/dev/null
as city act "${leads[2]}" close --outcome referred --note "移送公安" >/dev/null
as city act "${leads[3]}" accept >/dev/null
as city act "${leads[4]}" return --note "非本市机构" >/dev/null
as province act "${leads[4]}" reassign --city "$city" >/dev/null
as city act "${leads[5]}" accept >/dev/null
as city act "${leads[5]}" return --note "机构已迁出本市" >/dev/null
as province export --batch 1 --format csv --out "$work/batch-1.csv"
stop
c run --data "$work/store" --inbox "$work/inbox" >/dev/null 2>&1 # an empty second batch

(cd "$work/store" && ls *.duckdb *.wal 2>/dev/null) >"$work/files" || true
tar -C "$work/store" -czf "$out/store.tar.gz" -T "$work/files"
echo "$out/store.tar.gz: written by collider $commit (city $city, leads ${leads[*]})"
