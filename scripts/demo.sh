#!/usr/bin/env bash
# Runs the product locally, without a cluster: Redis and PostgreSQL on loopback, the storefront
# serving the sample deal (manifests/samples/timedeal.yaml, shipped: its checkout asks for an
# address) set to start a minute after launch, and a second one serving the free coupon deal
# (manifests/samples/timedeal-coupon.yaml), live from the start. Everything stays in .demo/ and
# stops with Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
demo="$root/.demo"
port=${TIMEDEAL_DEMO_PORT:-8080}

echo "== building"
cargo build -q -p timedeal-operator -p timedeal-tenant-app -p timedeal-directory
operator=target/debug/timedeal-operator
tenant=target/debug/tenant-app
directory_app=target/debug/timedeal-directory

echo "== checking the sample deals against the CRD, as 'kubectl apply' would (invalid ones on purpose)"
"$operator" check manifests/samples manifests/samples/invalid | sed 's/^/   /' | head -n 6 || true
echo "   … (see '$operator check manifests/samples/invalid' for every rule)"

# A loopback port nothing listens on.
free_port() {
  local p
  while :; do
    p=$(shuf -i 20000-60999 -n 1)
    (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
# A previous run that was killed without its clean-up leaves its processes listed here.
if [ -f "$demo/pids" ]; then
  xargs -r kill 2>/dev/null <"$demo/pids" || true
  sleep 1
fi
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$demo/pids"
}
trap cleanup EXIT INT TERM HUP

rm -rf "$demo" && mkdir -p "$demo"

echo "== starting Redis"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$demo" \
  >"$demo/redis.log" 2>&1 &
pids+=($!) && echo $! >>"$demo/pids"

echo "== starting PostgreSQL"
pg_bin=${TIMEDEAL_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
pg_port=$(free_port)
as_pg=()
if [ "$(id -u)" = 0 ]; then
  as_pg=(runuser -u postgres --)
  mkdir -p "$demo/pg" && chown postgres "$demo/pg" && chmod 700 "$demo/pg"
  chmod o+x "$demo"
fi
"${as_pg[@]}" "$pg_bin/initdb" -D "$demo/pg/data" -U timedeal --auth=trust --no-sync >"$demo/initdb.log"
"${as_pg[@]}" "$pg_bin/postgres" -D "$demo/pg/data" -p "$pg_port" -k "$demo/pg" -c listen_addresses=127.0.0.1 \
  >"$demo/postgres.log" 2>&1 &
pids+=($!) && echo $! >>"$demo/pids"
for _ in $(seq 100); do
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break
  sleep 0.1
done

echo "== the sample deal, starting a minute from now"
start=$(date -u -d '+1 minute' +%Y-%m-%dT%H:%M:%SZ)
end=$(date -u -d '+61 minutes' +%Y-%m-%dT%H:%M:%SZ)
sed -e "s/^    start: .*/    start: \"$start\"/" -e "s/^    end: .*/    end: \"$end\"/" \
    -e '/imageUrl:/d' manifests/samples/timedeal.yaml >"$demo/deal.yaml"
"$tenant" --deal "$demo/deal.yaml" --check | sed 's/^/   /'

# The demo runs offline: its draws are keyed by the seed alone unless a beacon is given
# (TIMEDEAL_DRAW_BEACON=https://api.drand.sh/<chain> where drand is reachable).
export TIMEDEAL_DRAW_BEACON="${TIMEDEAL_DRAW_BEACON:-none}"

# A fresh signing secret for this run only; it is never printed.
secret_file="$demo/signing-secret"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file")

TIMEDEAL_POSTGRES_URL="postgres://timedeal@127.0.0.1:$pg_port/postgres" \
  "$tenant" --deal "$demo/deal.yaml" --listen "127.0.0.1:$port" \
  --redis-url "redis://127.0.0.1:$redis_port" --signing-secret-file "$secret_file" \
  --payment-delay 300ms >"$demo/tenant-app.log" 2>&1 &
pids+=($!) && echo $! >>"$demo/pids"

echo "== the coupon deal, live now: 100 free espressos, a code per order"
coupon_port=$((port + 1))
coupon_start=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
sed -e "s/^    start: .*/    start: \"$coupon_start\"/" -e "s/^    end: .*/    end: \"$end\"/" \
    manifests/samples/timedeal-coupon.yaml >"$demo/coupon-deal.yaml"
TIMEDEAL_POSTGRES_URL="postgres://timedeal@127.0.0.1:$pg_port/postgres" \
  "$tenant" --deal "$demo/coupon-deal.yaml" --listen "127.0.0.1:$coupon_port" \
  --redis-url "redis://127.0.0.1:$redis_port" --signing-secret-file "$secret_file" \
  >"$demo/coupon-app.log" 2>&1 &
pids+=($!) && echo $! >>"$demo/pids"

echo "== the deal directory, over the sample deals"
directory_port=$((port + 2))
listed="$demo/listed"
mkdir -p "$listed"
# The directory links each deal to its storefront: here, the ones just started on loopback.
link() { sed -e "s|^metadata:|metadata:\n  annotations: { timedeal.dev/storefront-url: \"$1\" }|" "$2"; }
link "http://127.0.0.1:$port/" "$demo/deal.yaml" >"$listed/headphones.yaml"
link "http://127.0.0.1:$coupon_port/" "$demo/coupon-deal.yaml" >"$listed/espresso.yaml"
# An upcoming deal tomorrow, with no storefront yet (its link is its own host).
tomorrow=$(date -u -d '+1 day' +%Y-%m-%dT10:00:00Z)
tomorrow_end=$(date -u -d '+1 day' +%Y-%m-%dT10:30:00Z)
sed -e "s/^spec:/spec:\n  approved: true/" -e "s/^    start: .*/    start: \"$tomorrow\"/" \
    -e "s/^    end: .*/    end: \"$tomorrow_end\"/" manifests/samples/timedeal-minimal.yaml >"$listed/tea.yaml"
"$directory_app" --deals "$listed" --listen "127.0.0.1:$directory_port" >"$demo/directory.log" 2>&1 &
pids+=($!) && echo $! >>"$demo/pids"

for p in "$port" "$coupon_port" "$directory_port"; do
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$p/readyz" >/dev/null || { tail -n 20 "$demo"/*app.log; exit 1; }
done

cat <<MSG

== where to look
   directory      http://127.0.0.1:$directory_port/            (every deal: live, upcoming, coupon; search, categories, "remind me")
   storefront     http://127.0.0.1:$port/            (the deal starts at $start; join the pre-queue now;
                                                      its checkout asks where to ship)
   coupon deal    http://127.0.0.1:$coupon_port/            (live: join, take a free coupon, see its code)
   JSON API       http://127.0.0.1:$port/openapi.json
   metrics        http://127.0.0.1:$port/metrics
   status figures http://127.0.0.1:$port/internal/stats
   logs           .demo/tenant-app.log, .demo/coupon-app.log, .demo/directory.log, .demo/redis.log, .demo/postgres.log
Press Ctrl-C to stop everything.
MSG
wait "${pids[2]}"
