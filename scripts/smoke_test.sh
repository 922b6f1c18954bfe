#!/bin/sh
# Smoke test of a running Victor: for the broker and every function, /health/ready and
# /metrics, then one real operation each (a tool call, an embedding, /v1/status, an event
# through the broker ingress; chat's needs an LLM, so chat gets the first two).
#
#   VICTOR_CHAT_URL=... VICTOR_TOOLS_URL=... VICTOR_EMBEDDINGS_URL=... VICTOR_HEALTH_URL=... \
#   VICTOR_BROKER_URL=http://host/victor/default sh scripts/smoke_test.sh [--skip NAME[,NAME]]
#
# The URLs are the same VICTOR_*_URL settings the `victor` CLI reads (`victor dev` prints
# them). VICTOR_API_KEY (or the first of VICTOR_API_KEYS) is sent as the Bearer key;
# VICTOR_EVENT_TOKEN (else ./.victor/event-token) is sent with the event to the broker ingress instead.
# Prints one line per check; at the first failure prints one line naming the function,
# the check and what came back, and exits 1. Exit 2 for usage errors.
set -u

SKIP=""
while [ $# -gt 0 ]; do
    case "$1" in
    --skip) [ $# -ge 2 ] || { echo "smoke: --skip needs a list of names" >&2; exit 2; }; SKIP="$2"; shift 2 ;;
    --skip=*) SKIP="${1#--skip=}"; shift ;;
    -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "smoke: unknown argument $1 (usage: sh scripts/smoke_test.sh [--skip NAME[,NAME]])" >&2; exit 2 ;;
    esac
done
command -v curl >/dev/null 2>&1 || { echo "smoke: curl is required" >&2; exit 2; }

# The event token: VICTOR_EVENT_TOKEN, else the one a `victor dev` run left here (as `victor send` does).
if [ -z "${VICTOR_EVENT_TOKEN:-}" ] && [ -r .victor/event-token ]; then
    VICTOR_EVENT_TOKEN="$(cat .victor/event-token)"
fi
KEYS="${VICTOR_API_KEYS:-}"
KEY="${VICTOR_API_KEY:-${KEYS%%,*}}"
TIMEOUT="${VICTOR_SMOKE_TIMEOUT:-30}"
BODY="$(mktemp)"
ERRORS="$(mktemp)"
trap 'rm -f "$BODY" "$ERRORS"' EXIT

fail() {
    echo "smoke: FAILED $*" >&2
    exit 1
}

skipped() {
    case ",$SKIP," in *",$1,"*) return 0 ;; *) return 1 ;; esac
}

# request NAME CHECK EXPECTED_STATUS METHOD URL [JSON_BODY [EXTRA_HEADER...]]
request() {
    name="$1" check="$2" expected="$3" method="$4" target="$5"
    shift 5
    data=""
    if [ $# -gt 0 ]; then data="$1"; shift; fi
    if [ -n "$KEY" ]; then set -- "$@" -H "Authorization: Bearer $KEY"; fi
    : >"$BODY"
    if [ -n "$data" ]; then
        status="$(curl -sS -o "$BODY" -w '%{http_code}' --max-time "$TIMEOUT" -X "$method" \
            -H 'content-type: application/json' "$@" --data-binary "$data" "$target" 2>"$ERRORS")"
    else
        status="$(curl -sS -o "$BODY" -w '%{http_code}' --max-time "$TIMEOUT" -X "$method" "$@" "$target" \
            2>"$ERRORS")"
    fi
    if [ "$status" = "000" ]; then
        fail "$name $check: $method $target got no answer: $(tr '\n' ' ' <"$ERRORS")"
    fi
    if [ "$status" != "$expected" ]; then
        fail "$name $check: $method $target answered $status (expected $expected): $(head -c 300 "$BODY" | tr '\n' ' ')"
    fi
}

# contains NAME CHECK TEXT: the last answer's body holds TEXT
contains() {
    grep -q -- "$3" "$BODY" || fail "$1 $2: the answer lacks $3: $(head -c 300 "$BODY" | tr '\n' ' ')"
}

# url_of VARIABLE NAME: sets $url to the variable's value (without a trailing /), or fails
url_of() {
    eval "url=\${$1:-}"
    [ -n "$url" ] || fail "$2: $1 is not set (set it to the function's URL, or pass --skip $2)"
    url="${url%/}"
}

probes() {
    request "$1" readiness 200 GET "$2/health/ready"
    request "$1" metrics 200 GET "$2/metrics"
    contains "$1" metrics "victor_"
    echo "smoke: $1 ready, metrics served"
}

ran=0
if ! skipped broker; then
    url_of VICTOR_BROKER_URL broker
    ingress="$url"
    origin="$(printf '%s' "$ingress" | sed -E 's#^([A-Za-z]+://[^/]+).*#\1#')"
    probes broker "$origin"
    # The ingress takes the event token (VICTOR_EVENT_TOKEN) where events are authenticated, not the API key.
    api_key="$KEY"
    KEY="${VICTOR_EVENT_TOKEN:-$KEY}"
    request broker event 202 POST "$ingress" '{"source":"smoke-test"}' \
        -H 'ce-specversion: 1.0' -H 'ce-type: dev.knative.sources.ping' \
        -H 'ce-source: /victor/smoke-test' -H "ce-id: smoke-$(date +%s)-$$"
    KEY="$api_key"
    echo "smoke: broker accepted an event"
    ran=$((ran + 1))
fi
if ! skipped chat; then
    url_of VICTOR_CHAT_URL chat
    probes chat "$url"
    ran=$((ran + 1))
fi
if ! skipped tools; then
    url_of VICTOR_TOOLS_URL tools
    tools="$url"
    probes tools "$tools"
    request tools "tool call" 200 POST "$tools/v1/tools/list_directory" '{"path": "."}'
    contains tools "tool call" '"is_error":false'
    echo "smoke: tools ran list_directory"
    ran=$((ran + 1))
fi
if ! skipped embeddings; then
    url_of VICTOR_EMBEDDINGS_URL embeddings
    embeddings="$url"
    probes embeddings "$embeddings"
    request embeddings embedding 200 POST "$embeddings/v1/embeddings" '{"input": ["smoke test"]}'
    contains embeddings embedding '"embedding":\['
    echo "smoke: embeddings embedded a text"
    ran=$((ran + 1))
fi
if ! skipped health; then
    url_of VICTOR_HEALTH_URL health
    health="$url"
    probes health "$health"
    request health status 200 GET "$health/v1/status"
    echo "smoke: health reported the system status"
    ran=$((ran + 1))
fi
[ "$ran" -gt 0 ] || { echo "smoke: every check was skipped" >&2; exit 2; }
echo "smoke: OK ($ran checked)"
