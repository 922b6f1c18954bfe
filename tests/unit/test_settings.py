"""Settings: defaults from ARCHITECTURE.md, one-line errors naming the variable, secrets hidden."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common.settings import RateLimit, Secret, SettingsError, load_settings
from common.workspace import SECRET_FILES
from tests.support.foundation import ROOT, clean_env, victor_serve


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings({})
    assert settings.profile == "development"
    assert settings.log_level == "INFO"
    assert settings.debug is False
    assert settings.cache_ttl == 3600
    assert settings.enable_tool_cache is True
    assert settings.tool_cache_size == 1000
    assert settings.tool_cache_ttl == 3600
    assert settings.max_concurrent_tools == 10
    assert settings.enable_parallel_execution is True
    assert settings.embedding_model == "BAAI/bge-small-en-v1.5"
    assert settings.port == 8080
    assert settings.redis_url is None
    assert settings.database_url is None
    assert settings.broker_url is None


@pytest.mark.parametrize(
    ("env", "variable", "accepted"),
    [
        (
            {"VICTOR_MAX_CONCURRENT_TOOLS": "abc"},
            "VICTOR_MAX_CONCURRENT_TOOLS",
            "an integer >= 1 and <= 1000",
        ),
        ({"VICTOR_MAX_CONCURRENT_TOOLS": "0"}, "VICTOR_MAX_CONCURRENT_TOOLS", "an integer >= 1 and <= 1000"),
        ({"VICTOR_PROFILE": "staging"}, "VICTOR_PROFILE", "development, production"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL", "redis or rediss or unix"),
        ({"REDIS_URL": "redis://cache:port/0"}, "REDIS_URL", "invalid port"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL", "with a host"),
        (
            {"REDIS_URL": "redis://[::1/0"},
            "REDIS_URL",
            "is not a valid URL; expected a redis/rediss/unix URL",
        ),
        ({"DATABASE_URL": "postgresql://u:pw@[::1/db"}, "DATABASE_URL", "is not a valid URL"),
        ({"DATABASE_URL": "mysql://db/victor"}, "DATABASE_URL", "postgresql or postgres"),
        ({"VICTOR_DEBUG": "maybe"}, "VICTOR_DEBUG", "true, false, 1, 0, yes, no, on, off"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"VICTOR_LOG_LEVEL": "loud"}, "VICTOR_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ({"VICTOR_LOG_MAX_SIZE": "ten megs"}, "VICTOR_LOG_MAX_SIZE", "10MB"),
        ({"VICTOR_LOG_RETENTION_DAYS": "-1"}, "VICTOR_LOG_RETENTION_DAYS", "an integer >= 1"),
        ({"VICTOR_CACHE_TTL": "1h"}, "VICTOR_CACHE_TTL", "an integer >= 1"),
        ({"VICTOR_ENABLE_TOOL_CACHE": "sometimes"}, "VICTOR_ENABLE_TOOL_CACHE", "true, false"),
        ({"PORT": "70000"}, "PORT", "<= 65535"),
        ({"K_SINK": "broker.local"}, "K_SINK", "http or https"),
        ({"VICTOR_TOOLS_URL": "ftp://tools"}, "VICTOR_TOOLS_URL", "http or https"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "http or https"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_accepts(
    env: dict[str, str], variable: str, accepted: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert raised.value.variable == variable
    message = str(raised.value)
    assert message.startswith(f"{variable}: ")
    assert accepted in message
    assert "\n" not in message


def test_log_level_alias_and_debug() -> None:
    assert load_settings({"LOG_LEVEL": "warning"}).log_level == "WARNING"
    assert load_settings({"VICTOR_LOG_LEVEL": "error", "LOG_LEVEL": "debug"}).log_level == "ERROR"
    debug = load_settings({"VICTOR_DEBUG": "1"})
    assert (debug.debug, debug.log_level) == (True, "DEBUG")
    assert load_settings({"VICTOR_DEBUG": "true", "LOG_LEVEL": "INFO"}).log_level == "INFO"


def test_sizes_urls_and_function_urls_are_parsed() -> None:
    settings = load_settings(
        {
            "VICTOR_LOG_MAX_SIZE": "512KB",
            "VICTOR_MAX_EVENT_BYTES": "2MB",
            "K_SINK": "http://broker-ingress/default/default",
            "VICTOR_TOOLS_URL": "http://tools.local:8002/",
            "REDIS_URL": "redis://cache:6380/1",
            "VICTOR_PROFILE": "Production",
            # production refuses to start without an API key and with events unauthenticated
            "VICTOR_API_KEYS": "key-1",
            "VICTOR_EVENT_TOKEN": "event-token-1",
        }
    )
    assert settings.log_max_size == 512 * 1024
    assert settings.max_event_bytes == 2 * 1024 * 1024
    assert settings.broker_url == "http://broker-ingress/default/default"
    assert settings.function_urls == {"tools": "http://tools.local:8002"}
    assert settings.redis_url == "redis://cache:6380/1"
    assert settings.profile == "production"


SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-very-secret-1",
    "OPENAI_API_KEY": "sk-openai-very-secret-2",
    "VICTOR_API_KEY": "victor-key-very-secret-3",
    "DATABASE_URL": "postgresql://victor:pg-password-secret-4@db:5432/victor",
}


def test_secrets_never_show_in_repr_or_str() -> None:
    settings = load_settings(SECRETS)
    shown = repr(settings) + str(settings)
    for value in (
        "sk-ant-very-secret-1",
        "sk-openai-very-secret-2",
        "victor-key-very-secret-3",
        "pg-password",
    ):
        assert value not in shown
    assert settings.database_dsn == SECRETS["DATABASE_URL"]
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.reveal() == "sk-ant-very-secret-1"


def test_a_bad_database_url_error_hides_its_password() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"DATABASE_URL": "mysql://victor:hunter2secret@db/victor"})
    assert "hunter2secret" not in str(raised.value)
    assert "mysql://victor:****@db/victor" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "VICTOR_MAX_CONCURRENT_TOOLS",
            "abc",
            "victor: VICTOR_MAX_CONCURRENT_TOOLS: expected an integer >= 1 and <= 1000, got 'abc'",
        ),
        (
            "VICTOR_PROFILE",
            "staging",
            "victor: VICTOR_PROFILE: expected one of development, production; got 'staging'",
        ),
        (
            "REDIS_URL",
            "http://cache:6379",
            "victor: REDIS_URL: expected a URL with scheme redis or rediss or unix, got 'http://cache:6379'",
        ),
    ],
)
def test_victor_serve_exits_2_with_one_line_naming_the_variable(
    variable: str, value: str, line: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        victor_serve(),
        cwd=ROOT,
        env=clean_env(**{variable: value}, ANTHROPIC_API_KEY="sk-ant-never-printed"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]
    assert "sk-ant-never-printed" not in result.stderr


def test_redact_url_hides_a_password_and_leaves_urls_without_one_alone() -> None:
    from common.settings import redact_url

    assert redact_url("postgresql://app:s3cret@db:5432/victor") == "postgresql://app:****@db:5432/victor"
    assert (
        redact_url("postgresql://postgres:@/postgres?host=/tmp/pg")
        == "postgresql://postgres:@/postgres?host=/tmp/pg"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_secret_files_default_to_the_credential_names_and_can_be_replaced() -> None:
    assert load_settings({}).secret_files == SECRET_FILES
    assert ".env" in SECRET_FILES and "*.pem" in SECRET_FILES
    replaced = load_settings({"VICTOR_SECRET_FILES": " .env , *.secret ,"})
    assert replaced.secret_files == (".env", "*.secret")
    with pytest.raises(SettingsError) as refused:
        load_settings({"VICTOR_SECRET_FILES": ".env,config/prod.yaml"})
    assert str(refused.value) == (
        "VICTOR_SECRET_FILES: expected file-name globs such as .env or *.pem, got 'config/prod.yaml'"
    )


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db.internal port=5432 user=victor password=kv-secret-5 dbname=victor",
        "host=db password='kv secret 5' user=victor",
        "mysql://victor@db/victor?password=kv-secret-5",
    ],
)
def test_a_bad_key_value_database_url_error_hides_its_password(dsn: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"DATABASE_URL": dsn})
    assert raised.value.variable == "DATABASE_URL"
    assert "kv-secret-5" not in str(raised.value) and "kv secret 5" not in str(raised.value)
    assert "password=****" in str(raised.value)


def test_api_keys_are_comma_separated_for_rotation_and_api_key_is_their_single_key_alias() -> None:
    rotated = load_settings({"VICTOR_API_KEYS": " new-key-1 , old-key-0 ,", "VICTOR_API_KEY": "ignored"})
    assert [key.reveal() for key in rotated.api_keys] == ["new-key-1", "old-key-0"]
    assert rotated.client_key is not None and rotated.client_key.reveal() == "new-key-1"
    assert "new-key-1" not in repr(rotated)
    single = load_settings({"VICTOR_API_KEY": "only-key"})
    assert [key.reveal() for key in single.api_keys] == ["only-key"]
    assert load_settings({}).api_keys == ()


def test_the_production_profile_refuses_to_start_without_an_api_key() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"VICTOR_PROFILE": "production", "VICTOR_EVENT_AUTH": "none"})
    assert str(raised.value) == (
        "VICTOR_API_KEYS: the production profile needs at least one API key; set VICTOR_API_KEYS=key[,key...]"
    )


def test_victor_serve_in_production_without_a_key_exits_2_with_one_line_naming_victor_api_keys() -> None:
    result = subprocess.run(
        victor_serve(),
        cwd=ROOT,
        env=clean_env(VICTOR_PROFILE="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "victor: VICTOR_API_KEYS: the production profile needs at least one API key; "
        "set VICTOR_API_KEYS=key[,key...]"
    ]


def test_event_authentication_is_off_in_development_and_on_by_default_in_production() -> None:
    assert load_settings({}).event_auth == "none"
    production = {"VICTOR_PROFILE": "production", "VICTOR_API_KEYS": "k"}
    with pytest.raises(SettingsError) as raised:
        load_settings(production)  # on by default: oidc, which needs its issuer
    assert raised.value.variable == "VICTOR_OIDC_ISSUER"
    with_token = load_settings({**production, "VICTOR_EVENT_TOKEN": "t0k3n"})
    assert (with_token.event_auth, with_token.event_token) == ("token", Secret("t0k3n"))
    oidc = load_settings({**production, "VICTOR_OIDC_ISSUER": "https://kubernetes.default.svc"})
    assert (oidc.event_auth, oidc.oidc_issuer) == ("oidc", "https://kubernetes.default.svc")
    assert load_settings({**production, "VICTOR_EVENT_AUTH": "none"}).event_auth == "none"
    knative = load_settings({**production, "VICTOR_EVENT_AUTH": "none", "K_SERVICE": "victor-tools"})
    assert knative.oidc_audience == "victor-tools"


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        (
            {"VICTOR_EVENT_AUTH": "token"},
            "VICTOR_EVENT_TOKEN",
            "VICTOR_EVENT_AUTH=token needs the shared token; set VICTOR_EVENT_TOKEN",
        ),
        ({"VICTOR_EVENT_AUTH": "mtls"}, "VICTOR_EVENT_AUTH", "expected one of none, token, oidc; got 'mtls'"),
        (
            {"VICTOR_RATE_LIMIT": "60 per minute", "REDIS_URL": "redis://r/0"},
            "VICTOR_RATE_LIMIT",
            "expected a rate such as 60/minute (N/second, minute, hour or day, N >= 1); got '60 per minute'",
        ),
        (
            {"VICTOR_RATE_LIMIT": "0/second", "REDIS_URL": "redis://r/0"},
            "VICTOR_RATE_LIMIT",
            "expected a rate such as 60/minute (N/second, minute, hour or day, N >= 1); got '0/second'",
        ),
        (
            {"VICTOR_RATE_LIMIT": "60/minute"},
            "VICTOR_RATE_LIMIT",
            "the limit is counted in Redis, shared by every replica; set REDIS_URL",
        ),
    ],
)
def test_bad_auth_and_limit_settings_name_the_variable(
    env: dict[str, str], variable: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert str(raised.value) == f"{variable}: {message}"


def test_rate_limits_are_a_count_per_second_minute_hour_or_day() -> None:
    redis = {"REDIS_URL": "redis://r/0"}
    assert load_settings({**redis, "VICTOR_RATE_LIMIT": "60/minute"}).rate_limit == RateLimit(60, 60)
    assert load_settings({**redis, "VICTOR_RATE_LIMIT": " 5 / Second "}).rate_limit == RateLimit(5, 1)
    assert load_settings({**redis, "VICTOR_RATE_LIMIT": "1000/day"}).rate_limit == RateLimit(1000, 86400)
    assert str(RateLimit(100, 3600)) == "100/hour"
    assert load_settings(redis).rate_limit is None
