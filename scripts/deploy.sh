#!/bin/sh
# Deploys Victor to a Knative cluster, checks it, and rolls back when anything fails.
#
#   sh scripts/deploy.sh staging|production [--dry-run] [--version V]
#
# Steps, in order (each says what it does before it runs):
#   1. render   knative/overlays/ENV with the project's kustomize (both images set to V with --version)
#   2. backup   production only: `victor backup` of PostgreSQL and LanceDB, before anything changes
#   3. record   the revision every Knative Service serves now (what a rollback returns to)
#   4. migrate  the migration Job (victor migrate) of the release, waited for, before anything rolls
#   5. apply    the rendered manifests
#   6. wait     until every Knative Service in the namespace is Ready
#   7. smoke    scripts/smoke_test.sh against the deployed URLs
# If 4 fails, nothing else was changed. If 5, 6 or 7 fails, every Service that had a revision
# before is routed back to it (100% of its traffic), the script says what it did, and exits 1.
# --dry-run prints the plan and the rendered manifests and changes nothing.
#
# Settings: KUBECTL (kubectl), VICTOR_NAMESPACE (victor), VICTOR_BACKUP_DIR (backups),
# VICTOR_DEPLOY_TIMEOUT (seconds, 300), PYTHON (.venv/bin/python, else python3), VICTOR
# (victor; backup needs DATABASE_URL and LANCEDB_URI), VICTOR_SMOKE_SKIP (functions the
# smoke test cannot reach from here, e.g. the cluster-local tools,embeddings), and the
# VICTOR_*_URL settings to override the URLs read from the cluster.
set -eu
cd "$(dirname "$0")/.."

usage() {
    echo "usage: sh scripts/deploy.sh staging|production [--dry-run] [--version V]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
ENVIRONMENT="$1"
shift
case "$ENVIRONMENT" in staging | production) ;; *) usage ;; esac
DRY_RUN=0
VERSION=""
while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --version) [ $# -ge 2 ] || usage; VERSION="$2"; shift 2 ;;
    --version=*) VERSION="${1#--version=}"; shift ;;
    *) usage ;;
    esac
done
if [ -n "$VERSION" ] && ! printf '%s' "$VERSION" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'; then
    echo "deploy: --version must be an image tag (letters, digits, '_', '.', '-'), got '$VERSION'" >&2
    exit 2
fi

KUBECTL="${KUBECTL:-kubectl}"
NAMESPACE="${VICTOR_NAMESPACE:-victor}"
BACKUP_DIR="${VICTOR_BACKUP_DIR:-backups}"
TIMEOUT="${VICTOR_DEPLOY_TIMEOUT:-300}"
VICTOR="${VICTOR:-victor}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
IMAGE=ghcr.io/victor-functions/victor
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RENDERED="$WORK/manifests.yaml"
PREVIOUS="$WORK/previous-revisions"

say() { echo "deploy: $*"; }

say "step 1/7 render: knative/overlays/$ENVIRONMENT${VERSION:+ with $IMAGE and $IMAGE-embeddings at $VERSION}"
"$PYTHON" -m scripts.kustomize "knative/overlays/$ENVIRONMENT" >"$WORK/built.yaml"
if [ -n "$VERSION" ]; then
    sed -E "s#^([[:space:]]*image: $IMAGE(-embeddings)?)([:@][^[:space:]]*)?[[:space:]]*\$#\\1:$VERSION#" \
        "$WORK/built.yaml" >"$RENDERED"
else
    cp "$WORK/built.yaml" "$RENDERED"
fi

if [ "$DRY_RUN" = 1 ]; then
    [ "$ENVIRONMENT" = production ] && say "step 2/7 backup: would run '$VICTOR backup $BACKUP_DIR/<time>-before-deploy'"
    say "step 3/7 record: would read the serving revision of every Knative Service in namespace $NAMESPACE"
    say "step 4/7 migrate: would run the Job victor-migrate and wait up to ${TIMEOUT}s for it"
    say "step 5/7 apply: would run '$KUBECTL apply -n $NAMESPACE -f <these manifests>'"
    say "step 6/7 wait: would wait up to ${TIMEOUT}s for every Knative Service to be Ready"
    say "step 7/7 smoke: would run scripts/smoke_test.sh against the deployed URLs"
    say "dry run: nothing was changed; the manifests follow"
    cat "$RENDERED"
    exit 0
fi

if [ "$ENVIRONMENT" = production ]; then
    target="$BACKUP_DIR/$(date -u +%Y%m%dT%H%M%SZ)-before-deploy"
    say "step 2/7 backup: $VICTOR backup $target"
    mkdir -p "$BACKUP_DIR"
    if ! "$VICTOR" backup "$target"; then
        say "FAILED at backup: nothing was applied" >&2
        exit 1
    fi
fi

say "step 3/7 record: the revisions serving now in namespace $NAMESPACE"
"$KUBECTL" get ksvc -n "$NAMESPACE" \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.latestReadyRevisionName}{"\n"}{end}' \
    >"$PREVIOUS"

rollback() {
    step="$1"
    say "FAILED at $step; routing traffic back to the previous revisions" >&2
    rolled=0
    while read -r service revision; do
        [ -n "$service" ] && [ -n "$revision" ] || continue
        patch="{\"spec\":{\"traffic\":[{\"revisionName\":\"$revision\",\"percent\":100}]}}"
        if "$KUBECTL" patch ksvc "$service" -n "$NAMESPACE" --type merge -p "$patch" >/dev/null; then
            say "rolled back $service to $revision" >&2
            rolled=$((rolled + 1))
        else
            say "could not roll back $service to $revision; fix it by hand" >&2
        fi
    done <"$PREVIOUS"
    [ "$rolled" -gt 0 ] || say "no Service had a previous revision: nothing to roll back to" >&2
    exit 1
}

say "step 4/7 migrate: the Job victor-migrate, before the Services roll"
if ! { "$KUBECTL" delete job victor-migrate -n "$NAMESPACE" --ignore-not-found \
    && "$KUBECTL" apply -n "$NAMESPACE" -f "$RENDERED" -l app.kubernetes.io/component=migrate \
    && "$KUBECTL" wait job/victor-migrate -n "$NAMESPACE" --for=condition=complete --timeout="${TIMEOUT}s"; }; then
    say "FAILED at migrate: the Services were not changed" >&2
    exit 1
fi

say "step 5/7 apply: $KUBECTL apply -n $NAMESPACE"
"$KUBECTL" apply -n "$NAMESPACE" -f "$RENDERED" || rollback apply

say "step 6/7 wait: every Knative Service Ready (up to ${TIMEOUT}s)"
"$KUBECTL" wait ksvc --all -n "$NAMESPACE" --for=condition=Ready --timeout="${TIMEOUT}s" || rollback wait

say "step 7/7 smoke: scripts/smoke_test.sh"
for name in chat tools embeddings health; do
    variable="VICTOR_$(printf '%s' "$name" | tr '[:lower:]' '[:upper:]')_URL"
    eval "value=\${$variable:-}"
    if [ -z "$value" ]; then
        value="$("$KUBECTL" get ksvc "victor-$name" -n "$NAMESPACE" -o jsonpath='{.status.url}')" || rollback smoke
        export "$variable=$value"
    fi
done
if [ -z "${VICTOR_BROKER_URL:-}" ]; then
    VICTOR_BROKER_URL="$("$KUBECTL" get broker default -n "$NAMESPACE" -o jsonpath='{.status.address.url}')" \
        || rollback smoke
    export VICTOR_BROKER_URL
fi
sh scripts/smoke_test.sh ${VICTOR_SMOKE_SKIP:+--skip "$VICTOR_SMOKE_SKIP"} || rollback smoke

say "$ENVIRONMENT is deployed${VERSION:+ at $VERSION} and passed the smoke test"
