"""Settings: defaults from ARCHITECTURE.md, one-line errors naming the variable, secrets hidden."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from common.settings import SettingsError, load_settings
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
