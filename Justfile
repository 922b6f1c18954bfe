# Everyday commands. Run `sh scripts/install.sh` once first; `.venv/bin/just` is installed by it.
set shell := ["bash", "-cu"]
venv := ".venv/bin"

# run the whole system locally (embedded Redis and PostgreSQL when the URLs are unset)
dev:
    {{venv}}/victor dev

# run the test suite against real Redis, PostgreSQL and LanceDB
test *args:
    {{venv}}/python -m pytest {{args}}

# lint, check formatting and type-check
lint:
    {{venv}}/ruff check . && {{venv}}/ruff format --check . && {{venv}}/mypy

# run every benchmark and print each figure beside its baseline
bench:
    {{venv}}/python -m bench

# validate the Knative manifests and lint the Dockerfile
validate:
    {{venv}}/python -m scripts.validate_manifests && {{venv}}/hadolint Dockerfile
