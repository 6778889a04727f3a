# shellcheck shell=bash
# TLS helpers for the TLS / HTTP/2 bench scripts (source after lib.sh).
#
#   sg_make_named_cert DIR NAME CN [ec|rsa]
#                                self-signed certificate (ECDSA P-256, or RSA 2048):
#                                DIR/NAME.crt, .key, .pem (both)
#   sg_start_tls_proxy NAME CPU PORT CERT_DIR BACKEND_PORT...
#                                scalegate | nginx | haproxy terminating TLS with
#                                CERT_DIR/web.{crt,key,pem}, ALPN h2 + http/1.1, one
#                                worker/thread pinned to CPU; sets SG_PROXY_PIDS like
#                                sg_start_proxy (nginx: master and worker).

sg_make_named_cert() {
  local dir=$1 name=$2 cn=$3 kind=${4:-ec} key_args
  if [[ $kind == rsa ]]; then
    key_args=(-newkey rsa:2048)
  else
    key_args=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
  fi
  openssl req -x509 "${key_args[@]}" -nodes -days 2 \
    -subj "/CN=$cn" -addext "subjectAltName=DNS:$cn" \
    -keyout "$dir/$name.key" -out "$dir/$name.crt" >/dev/null 2>&1 || sg_die "openssl req failed"
  cat "$dir/$name.crt" "$dir/$name.key" >"$dir/$name.pem"
}

sg_write_tls_scalegate_cfg() {
  local file=$1 port=$2 certs=$3
  shift 3
  local members="" i=1 p
  for p in "$@"; do
    members+="${members:+, }{ id: b$i, address: 127.0.0.1:$p }"
    i=$((i + 1))
  done
  cat >"$file" <<CFG
log: { level: warn }
listeners:
  - name: web
    protocol: http
    listen: 127.0.0.1:$port
    routes: [ { path_prefix: /, pool: web } ]
    tls: { certificates: [ { cert: $certs/web.crt, key: $certs/web.key } ] }
pools:
  web:
    balance: round_robin
    upstream: { max_idle_per_member: 256 }
    members: [ $members ]
CFG
}

sg_write_tls_nginx_conf() {
  local dir=$1 port=$2 certs=$3
  shift 3
  local servers="" p
  for p in "$@"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  cat >"$dir/nginx.conf" <<CFG
daemon off;
worker_processes 1;
worker_rlimit_nofile 8192;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  ssl_protocols TLSv1.2 TLSv1.3;
  upstream pool {
$servers    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port ssl http2;
    ssl_certificate $certs/web.crt;
    ssl_certificate_key $certs/web.key;
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CFG
}

sg_write_tls_haproxy_cfg() {
  local file=$1 port=$2 certs=$3
  shift 3
  local servers="" i=1 p
  for p in "$@"; do
    servers+="  server b$i 127.0.0.1:$p"$'\n'
    i=$((i + 1))
  done
  cat >"$file" <<CFG
global
  nbthread 1
  maxconn 8000
  no strict-limits
  tune.bufsize 16384
  ssl-default-bind-options ssl-min-ver TLSv1.2
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
  bind 127.0.0.1:$port ssl crt $certs/web.pem alpn h2,http/1.1
  default_backend pool
backend pool
  balance roundrobin
$servers
CFG
}

sg_start_tls_proxy() {
  local name=$1 cpu=$2 port=$3 certs=$4
  shift 4
  local dir=$SG_TMP/$name-tls pid
  mkdir -p "$dir"
  case $name in
    scalegate)
      sg_ensure_built scalegate "$SG_SCALEGATE"
      sg_write_tls_scalegate_cfg "$dir/scalegate.yaml" "$port" "$certs" "$@"
      taskset -c "$cpu" "$SG_SCALEGATE" --config "$dir/scalegate.yaml" --workers 1 \
        >"$dir/log" 2>&1 &
      pid=$!
      ;;
    nginx)
      sg_write_tls_nginx_conf "$dir" "$port" "$certs" "$@"
      taskset -c "$cpu" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    haproxy)
      sg_write_tls_haproxy_cfg "$dir/haproxy.cfg" "$port" "$certs" "$@"
      taskset -c "$cpu" haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
      pid=$!
      ;;
    *) sg_die "unknown TLS proxy '$name'" ;;
  esac
  sg_track "$pid"
  if ! sg_wait_port "$port" 15; then
    cat "$dir/log" >&2
    sg_die "$name did not start"
  fi
  SG_PROXY_PIDS=("$pid")
  if [[ $name == nginx ]]; then
    local child
    for child in $(pgrep -P "$pid"); do SG_PROXY_PIDS+=("$child"); done
  fi
}

# "median FILE TARGET COLUMN": the median of COLUMN over the rows of TARGET in a TSV.
sg_tsv_median() {
  awk -F'\t' -v t="$2" -v c="$3" '$1 == t { print $c }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
