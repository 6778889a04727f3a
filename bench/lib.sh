# shellcheck shell=bash disable=SC2034  # globals are read by the scripts that source this
# Shared helpers for scalegate's bench scripts. Source it; it defines functions and globals
# prefixed sg_/SG_ and changes no shell options of its caller.
#
#   sg_init                  temp dir ($SG_TMP) + exit trap that kills every tracked process
#   sg_track PID...          kill these on exit (children of nginx go with their master)
#   sg_free_port             a currently free loopback TCP port
#   sg_wait_port PORT [S]    wait until 127.0.0.1:PORT accepts (bounded)
#   sg_ensure_built TARGET BIN  build a CMake target with the release preset if BIN is missing
#   sg_start_backend ID CPU [ARGS...]   start sgbackend pinned to CPU; sets SG_LAST_PORT, SG_LAST_PID
#   sg_start_proxy NAME CPU PORT BACKEND_PORT...  start haproxy|nginx|scalegate; sets SG_PROXY_PIDS
#                            (CPU is a taskset list: "1" or "0,1"); $SG_WORKERS threads/processes,
#                            $SG_TLS ("" plain, "tls" HTTPS/1.1, "h2" HTTP/2 over TLS) downstream
#   sg_proxy_pids            SG_PROXY_PIDS again (nginx: master + the workers alive now)
#   sg_stop_proxy            stop what sg_start_proxy started
#   sg_make_cert DIR         throwaway self-signed P-256 cert: sets SG_CERT, SG_KEY, SG_CERT_KEY_PEM
#   sg_scalegate_tls_yaml MODE   the scalegate listener's TLS lines (the one place to change)
#   sg_scalegate_supports MODE   0 when this scalegate build accepts such a listener (--check)
#   sg_cpu_us PID...         utime+stime of the processes, in microseconds
#   sg_rss_kb PID            VmRSS in kB

SG_REPO=${SG_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SG_BIN_DIR=${SG_BIN_DIR:-$SG_REPO/build/release}
# Either binary may also be named on its own (e.g. a fresh sgbackend next to another build's
# scalegate); a binary named this way is never built by these scripts.
SG_SGBACKEND=${SG_SGBACKEND:-$SG_BIN_DIR/bench/sgbackend}
SG_SCALEGATE=${SG_SCALEGATE:-$SG_BIN_DIR/control/scalegate}
SG_TMP=""
SG_PIDS=()
SG_PROXY_PIDS=()
SG_LAST_PORT=""
SG_LAST_PID=""
SG_WORKERS=1 # proxy worker threads (scalegate --workers, HAProxy nbthread) or nginx processes
SG_NICE=0    # nice -n for every process started (negative: ahead of other work; needs root)
SG_TLS=""    # downstream (client -> proxy): "" plain HTTP/1.1, "tls" HTTPS/1.1, "h2" HTTP/2+TLS
SG_CERT=""
SG_KEY=""
SG_CERT_KEY_PEM=""

sg_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
sg_die() { echo "error: $*" >&2; exit 2; }

sg_init() {
  SG_TMP=$(mktemp -d /tmp/scalegate-bench.XXXXXX)
  trap sg_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

sg_track() { SG_PIDS+=("$@"); }

# Kills tracked processes by pid (TERM, then KILL after a grace period) and removes the temp
# dir. Only processes this script started are touched.
sg_cleanup() {
  local pid live=()
  for pid in "${SG_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null && live+=("$pid")
  done
  local deadline=$((SECONDS + 5))
  for pid in "${live[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  [[ -n $SG_TMP && -d $SG_TMP ]] && rm -rf "$SG_TMP"
  return 0
}

sg_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

sg_wait_port() {
  local port=$1 limit=${2:-10}
  local deadline=$((SECONDS + limit))
  while ((SECONDS <= deadline)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  sg_log "nothing listens on 127.0.0.1:$port after ${limit}s"
  return 1
}

# sg_ensure_built TARGET BIN: builds TARGET with the release preset when BIN does not exist
# yet and is where that preset puts it.
sg_ensure_built() {
  local target=$1 bin=$2
  [[ -x $bin ]] && return 0
  if [[ $bin != "$SG_REPO/build/release/"* ]]; then
    sg_die "$bin not found (not building it: it is outside build/release)"
  fi
  sg_log "building $target (cmake --preset release) ..."
  (cd "$SG_REPO" && cmake --preset release >/dev/null &&
    cmake --build --preset release -j2 --target "$target") >&2 ||
    sg_die "building $target failed"
}

# Starts one sgbackend pinned to CPU; waits for its --port-file.
sg_start_backend() {
  local id=$1 cpu=$2
  shift 2
  sg_ensure_built sgbackend "$SG_SGBACKEND"
  local port_file=$SG_TMP/$id.port
  rm -f "$port_file"
  nice -n "$SG_NICE" taskset -c "$cpu" "$SG_SGBACKEND" --id "$id" --listen 127.0.0.1:0 \
    --port-file "$port_file" "$@" >"$SG_TMP/$id.log" 2>&1 &
  SG_LAST_PID=$!
  sg_track "$SG_LAST_PID"
  local deadline=$((SECONDS + 10))
  while [[ ! -s $port_file ]]; do
    kill -0 "$SG_LAST_PID" 2>/dev/null || { cat "$SG_TMP/$id.log" >&2; sg_die "sgbackend $id exited"; }
    ((SECONDS > deadline)) && sg_die "sgbackend $id wrote no port file"
    sleep 0.02
  done
  SG_LAST_PORT=$(<"$port_file")
}

sg_write_haproxy_cfg() {
  local file=$1 port=$2 maxconn=$3
  shift 3
  {
    cat <<EOF
global
  nbthread $SG_WORKERS
  maxconn $maxconn
  # maxconn reserves two descriptors per connection; when that is above the hard ulimit (the
  # idle-connection test) start anyway: idle clients leave the server side unused.
  no strict-limits
  tune.bufsize 16384
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout http-request 60s
frontend web
  bind 127.0.0.1:$port$(sg_haproxy_bind_tls)
  maxconn $maxconn
  default_backend pool
backend pool
  balance roundrobin
EOF
    local i=1 p
    for p in "$@"; do
      echo "  server b$i 127.0.0.1:$p"
      i=$((i + 1))
    done
  } >"$file"
}

sg_write_nginx_conf() {
  local dir=$1 port=$2 conns=$3
  shift 3
  mkdir -p "$dir"
  # Each proxied connection may use two descriptors; stay within the hard limit.
  local nofile=$((conns * 2 + 100)) hard
  hard=$(ulimit -Hn)
  [[ $hard != unlimited ]] && ((nofile > hard)) && nofile=$hard
  {
    cat <<EOF
daemon off;
worker_processes $SG_WORKERS;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((nofile - 32)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
EOF
    if (($# == 0)); then
      # No backends: nginx answers by itself (the reference for sgbackend's own speed).
      printf '  server { listen 127.0.0.1:%s%s; %s location / { return 200 "b1\\n"; } }\n' \
        "$port" "$(sg_nginx_listen_tls)" "$(sg_nginx_server_tls)"
    else
      echo "  upstream pool {"
      local p
      for p in "$@"; do echo "    server 127.0.0.1:$p;"; done
      cat <<EOF
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port$(sg_nginx_listen_tls);
    $(sg_nginx_server_tls)
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
    fi
    echo "}"
  } >"$dir/nginx.conf"
}

sg_write_scalegate_cfg() {
  local file=$1 port=$2
  shift 2
  {
    # The admin API defaults to 127.0.0.1:9900, which another scalegate may hold: a free port.
    cat <<EOF
log: { level: warn }
admin: { listen: 127.0.0.1:$(sg_free_port) }
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:$port
    routes: [ { path_prefix: /, pool: web } ]
$(sg_scalegate_tls_yaml "$SG_TLS")
pools:
  web:
    balance: round_robin
EOF
    local members="" i=1 p
    for p in "$@"; do
      members+="${members:+, }{ id: b$i, address: 127.0.0.1:$p }"
      i=$((i + 1))
    done
    echo "    members: [ $members ]"
  } >"$file"
}

# sg_start_proxy NAME CPU PORT MAXCONN BACKEND_PORT...
#   NAME: scalegate | haproxy | nginx | nginx-return (nginx answering by itself) |
#         sgbackend (an sgbackend measured directly; no backends)
# Pins it to CPU, waits for PORT, and sets SG_PROXY_PIDS to every process whose CPU time
# counts (nginx: master and worker).
sg_start_proxy() {
  local name=$1 cpu=$2 port=$3 maxconn=$4
  shift 4
  local dir=$SG_TMP/$name pid
  mkdir -p "$dir"
  case $name in
    haproxy)
      sg_write_haproxy_cfg "$dir/haproxy.cfg" "$port" "$maxconn" "$@"
      nice -n "$SG_NICE" taskset -c "$cpu" haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    nginx | nginx-return)
      if [[ $name == nginx ]]; then
        sg_write_nginx_conf "$dir" "$port" "$maxconn" "$@"
      else
        sg_write_nginx_conf "$dir" "$port" "$maxconn"
      fi
      nice -n "$SG_NICE" taskset -c "$cpu" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    scalegate)
      sg_ensure_built scalegate "$SG_SCALEGATE"
      sg_write_scalegate_cfg "$dir/scalegate.yaml" "$port" "$@"
      nice -n "$SG_NICE" taskset -c "$cpu" "$SG_SCALEGATE" --config "$dir/scalegate.yaml" \
        --workers "$SG_WORKERS" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    sgbackend)
      sg_ensure_built sgbackend "$SG_SGBACKEND"
      nice -n "$SG_NICE" taskset -c "$cpu" "$SG_SGBACKEND" --id b1 --listen "127.0.0.1:$port" \
        --threads "$SG_WORKERS" --quiet >"$dir/log" 2>&1 &
      pid=$!
      ;;
    *) sg_die "unknown proxy '$name'" ;;
  esac
  sg_track "$pid"
  if ! sg_wait_port "$port" 15; then
    cat "$dir/log" >&2
    sg_die "$name did not start"
  fi
  SG_PROXY_PIDS=("$pid")
  sg_proxy_pids
}

# nginx forks its workers after it starts listening: list them again when measuring.
sg_proxy_pids() {
  local master=${SG_PROXY_PIDS[0]} child
  SG_PROXY_PIDS=("$master")
  for child in $(pgrep -P "$master"); do SG_PROXY_PIDS+=("$child"); done
}

# ---- TLS downstream ------------------------------------------------------------------------

sg_make_cert() {
  local dir=$1
  mkdir -p "$dir"
  SG_CERT=$dir/cert.pem
  SG_KEY=$dir/key.pem
  SG_CERT_KEY_PEM=$dir/cert+key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$SG_KEY" -out "$SG_CERT" 2>/dev/null || sg_die "openssl req failed"
  cat "$SG_CERT" "$SG_KEY" >"$SG_CERT_KEY_PEM" # HAProxy's crt wants both in one file
}

sg_haproxy_bind_tls() {
  case $SG_TLS in
    tls) echo " ssl crt $SG_CERT_KEY_PEM alpn http/1.1" ;;
    h2) echo " ssl crt $SG_CERT_KEY_PEM alpn h2,http/1.1" ;;
  esac
}
sg_nginx_listen_tls() {
  case $SG_TLS in
    tls) echo " ssl" ;;
    h2) echo " ssl http2" ;;
  esac
}
sg_nginx_server_tls() {
  [[ -n $SG_TLS ]] && echo "ssl_certificate $SG_CERT; ssl_certificate_key $SG_KEY;"
  return 0
}

# >>> scalegate TLS listener config: the ONE place to change once branch h2tls lands. <<<
# Prints the lines that go inside the listener entry (4-space indent) for MODE "" (plain
# HTTP/1.1: nothing), "tls" (HTTPS/1.1) or "h2" (HTTP/2 over TLS, ALPN h2). The key names are
# a guess until scalegate's `tls:` section exists; sg_scalegate_supports tells whether the
# binary accepts them.
sg_scalegate_tls_yaml() {
  case $1 in
    tls) echo "    tls: { certificates: [ { cert: $SG_CERT, key: $SG_KEY } ], alpn: [ http/1.1 ] }" ;;
    h2) echo "    tls: { certificates: [ { cert: $SG_CERT, key: $SG_KEY } ], alpn: [ h2, http/1.1 ] }" ;;
  esac
}

# sg_scalegate_supports MODE: 0 when `scalegate --check` accepts a listener of that mode.
sg_scalegate_supports() {
  [[ -z $1 ]] && return 0
  local f=$SG_TMP/scalegate-check-$1.yaml saved=$SG_TLS
  SG_TLS=$1
  sg_write_scalegate_cfg "$f" 1 1
  SG_TLS=$saved
  "$SG_SCALEGATE" --check "$f" >"$f.out" 2>&1
}

sg_stop_proxy() {
  local pid
  # nginx workers may already be gone once their master has stopped them: not an error.
  for pid in "${SG_PROXY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 5))
  for pid in "${SG_PROXY_PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  SG_PROXY_PIDS=()
  return 0
}

# utime + stime (fields 14 and 15 of /proc/PID/stat; the comm field may hold spaces, so
# split after its closing parenthesis), summed over the pids, in microseconds.
sg_cpu_us() {
  local tck total=0 pid stat rest
  tck=$(getconf CLK_TCK)
  for pid in "$@"; do
    stat=$(<"/proc/$pid/stat") || continue
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    # rest starts at field 3 (state), so utime/stime (14/15) are f[11]/f[12].
    total=$((total + f[11] + f[12]))
  done
  echo $((total * 1000000 / tck))
}

sg_rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}
