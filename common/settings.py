"""Typed settings read once from the environment.

Every setting in ARCHITECTURE.md lives here. A bad value raises `SettingsError`,
whose message is one line naming the variable and the values it accepts; the
CLI prints it and exits with status 2. Secrets are wrapped in `Secret` so that
they never show up in logs, reprs or error bodies.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from common.workspace import SECRET_FILES

Profile = Literal["development", "production"]
EventAuth = Literal["none", "token", "oidc"]
EVENT_AUTH_MODES = ("none", "token", "oidc")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour|day)\s*$", re.IGNORECASE)
_RATE_WINDOWS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# key=value words of a libpq connection string whose value is a secret
_DSN_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


class SettingsError(ValueError):
    """A setting has a value the program cannot use."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class Secret:
    """A string that prints as asterisks; call `reveal()` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """The URL with any password replaced by asterisks, safe to log."""
    parts = urlsplit(url)
    if not parts.password:  # no password, or an empty one: nothing to hide
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


def redact_dsn(value: str) -> str:
    """A database URL or libpq key/value string with its password replaced by asterisks, safe to show."""
    if "://" in value:
        try:
            value = redact_url(value)
        except ValueError:  # not even a URL: show nothing of it rather than risk a password
            return "**********"
    # libpq takes password=... as a key/value word and as a URL query parameter alike
    return _DSN_SECRET.sub(r"\1****", value)


class RateLimit(msgspec.Struct, frozen=True):
    """At most `requests` per `window` seconds for one API key (VICTOR_RATE_LIMIT, e.g. 60/minute)."""

    requests: int
    window: int

    def __str__(self) -> str:
        unit = next(name for name, seconds in _RATE_WINDOWS.items() if seconds == self.window)
        return f"{self.requests}/{unit}"


class EnvReader:
    """Typed readers over an environment mapping; each raises `SettingsError` on bad input.

    Function packages use this for their own settings so every variable is parsed
    and reported the same way.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, *names: str) -> tuple[str, str | None]:
        """The first of `names` that is set (even to ""), and its value."""
        for name in names:
            if name in self.environ:
                return name, self.environ[name]
        return names[0], None

    def string(self, name: str, default: str, *aliases: str) -> str:
        _, value = self.raw(name, *aliases)
        return default if value is None or value == "" else value

    def optional(self, name: str, *aliases: str) -> str | None:
        _, value = self.raw(name, *aliases)
        return value or None

    def secret(self, name: str) -> Secret | None:
        value = self.environ.get(name)
        return Secret(value) if value else None

    def secrets(self, name: str, *aliases: str) -> tuple[Secret, ...]:
        """Comma-separated secrets (several keys, for rotation) from the first of `name`, `aliases` set."""
        _, value = self.raw(name, *aliases)
        return tuple(Secret(part.strip()) for part in (value or "").split(",") if part.strip())

    def rate(self, name: str) -> RateLimit | None:
        """A rate such as 60/minute (second, minute, hour, day); None when unset."""
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return None
        match = _RATE.match(value)
        if not match or int(match.group(1)) < 1:
            raise SettingsError(
                name,
                f"expected a rate such as 60/minute (N/second, minute, hour or day, N >= 1); got {value!r}",
            )
        return RateLimit(int(match.group(1)), _RATE_WINDOWS[match.group(2).lower()])

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return default
        accepted = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            number = int(value.strip())
        except ValueError:
            raise SettingsError(name, f"expected {accepted}, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            raise SettingsError(name, f"expected {accepted}, got {value!r}")
        return number

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise SettingsError(name, f"expected a number >= {minimum}, got {value!r}") from None
        if number < minimum or number != number:
            raise SettingsError(name, f"expected a number >= {minimum}, got {value!r}")
        return number

    def boolean(self, name: str, default: bool, *aliases: str) -> bool:
        used, value = self.raw(name, *aliases)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(used, f"expected one of true, false, 1, 0, yes, no, on, off; got {value!r}")

    def choice(self, name: str, default: str, choices: tuple[str, ...], *aliases: str) -> str:
        used, value = self.raw(name, *aliases)
        if value is None or value.strip() == "":
            return default
        for candidate in choices:
            if value.strip().lower() == candidate.lower():
                return candidate
        raise SettingsError(used, f"expected one of {', '.join(choices)}; got {value!r}")

    def url(self, name: str, schemes: tuple[str, ...], *aliases: str) -> str | None:
        used, value = self.raw(name, *aliases)
        if not value:
            return None
        try:
            parts = urlsplit(value.strip())
        except ValueError:  # for example an unclosed IPv6 bracket
            raise SettingsError(used, f"is not a valid URL; expected a {'/'.join(schemes)} URL") from None
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise SettingsError(used, f"has an invalid port; expected a {'/'.join(schemes)} URL") from None
        shown = redact_dsn(value)
        if parts.scheme not in schemes:
            raise SettingsError(used, f"expected a URL with scheme {' or '.join(schemes)}, got {shown!r}")
        if not parts.netloc and not (parts.scheme.startswith("unix") or parts.path):
            raise SettingsError(used, f"expected a URL with a host, got {shown!r}")
        return value.strip()

    def size(self, name: str, default: int) -> int:
        value = self.environ.get(name)
        if value is None or value.strip() == "":
            return default
        match = _SIZE.match(value)
        if not match:
            raise SettingsError(name, f"expected a size such as 10485760, 512KB, 10MB or 1GB; got {value!r}")
        unit = (match.group(2) or "").lower()[:1] if (match.group(2) or "").lower() != "b" else ""
        return int(match.group(1)) * _SIZE_UNITS[unit]


# ---------------------------------------------------------------- HTTP connection limits (issue 12, item 7)


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What one connection may cost a server `victor serve` starts (see common/http_limits.py)."""

    max_header_bytes: int = 64 * 1024  # VICTOR_MAX_HEADER_BYTES: request line and headers; over it, 431
    max_headers: int = 100  # VICTOR_MAX_HEADERS: header fields; over it, 431
    header_timeout: float = 10.0  # VICTOR_HEADER_TIMEOUT: seconds for a whole head; then closed
    keepalive_timeout: float = 5.0  # VICTOR_KEEPALIVE_TIMEOUT: seconds an idle kept-alive connection stays


def http_limit_settings(env: EnvReader) -> HttpLimits:
    """The four HTTP limits; each bad value names its variable."""
    return HttpLimits(
        max_header_bytes=env.size("VICTOR_MAX_HEADER_BYTES", 64 * 1024),
        max_headers=env.integer("VICTOR_MAX_HEADERS", 100, minimum=1, maximum=10000),
        header_timeout=env.number("VICTOR_HEADER_TIMEOUT", 10.0, minimum=0.1),
        keepalive_timeout=env.number("VICTOR_KEEPALIVE_TIMEOUT", 5.0, minimum=0.1),
    )


# ----------------------------------------------------------------


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting in ARCHITECTURE.md, parsed and checked."""

    profile: Profile = "development"
    log_level: str = "INFO"
    debug: bool = False
    log_file: str | None = None
    log_retention_days: int = 7
    log_max_size: int = 10 * 1024 * 1024
    port: int = 8080
    metrics_port: int | None = None
    redis_url: str | None = None
    database_url: Secret | None = None
    lancedb_uri: str = "data/lancedb"
    cache_ttl: int = 3600
    enable_tool_cache: bool = True
    tool_cache_size: int = 1000
    tool_cache_ttl: int = 3600
    max_concurrent_tools: int = 10
    enable_parallel_execution: bool = True
    workspace_dir: Path = Path(".")
    anthropic_api_key: Secret | None = None
    anthropic_base_url: str | None = None
    openai_api_key: Secret | None = None
    openai_base_url: str | None = None
    embedding_model: str = "BAAI/bge-small-en-v1.5"
    # auto: ONNX (no torch) when the model directory holds an export and no GPU is present.
    embedding_backend: str = "auto"
    broker_url: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    # VICTOR_API_KEYS (or the single VICTOR_API_KEY): any one of them opens the /v1 routes.
    api_keys: tuple[Secret, ...] = ()
    rate_limit: RateLimit | None = None
    # How delivered events (POST /, the broker ingress) are authenticated, and with what.
    event_auth: EventAuth = "none"
    event_token: Secret | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    # A token file (a projected service-account token) sent with events this process publishes under oidc.
    oidc_token_file: str | None = None
    max_event_bytes: int = 4 * 1024 * 1024
    function_urls: dict[str, str] = msgspec.field(default_factory=dict)
    # File names the tools and the indexer never read or write (globs, matched case-insensitively).
    secret_files: tuple[str, ...] = SECRET_FILES
    http_limits: HttpLimits = msgspec.field(default_factory=HttpLimits)

    @property
    def client_key(self) -> Secret | None:
        """The key a client (the victor CLI) sends: the first of VICTOR_API_KEYS."""
        return self.api_keys[0] if self.api_keys else None

    @property
    def database_dsn(self) -> str | None:
        return self.database_url.reveal() if self.database_url else None


FUNCTION_NAMES = ("chat", "tools", "embeddings", "health")
# What a function needs beyond the core install: the extra that brings it, and its modules.
FUNCTION_EXTRAS = {"embeddings": ("embeddings", ("onnxruntime", "tokenizers", "lancedb", "pyarrow"))}


def require_extra(function: str) -> None:
    """Raise `SettingsError` naming the extra to install when `function` cannot run in this install."""
    if function not in FUNCTION_EXTRAS:
        return
    extra, modules = FUNCTION_EXTRAS[function]
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise SettingsError(
            function,
            f"needs the {extra} extra: pip install 'victor-functions[{extra}]' "
            f"(not installed: {', '.join(missing)})",
        )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment; raise `SettingsError` naming the first bad variable."""
    env = EnvReader(os.environ if environ is None else environ)
    debug = env.boolean("VICTOR_DEBUG", False)
    level = env.choice("VICTOR_LOG_LEVEL", "DEBUG" if debug else "INFO", LOG_LEVELS, "LOG_LEVEL")
    database_url = env.url("DATABASE_URL", ("postgresql", "postgres"))
    function_urls = {}
    for name in FUNCTION_NAMES:
        url = env.url(f"VICTOR_{name.upper()}_URL", ("http", "https"))
        if url:
            function_urls[name] = url.rstrip("/")
    metrics_port = env.integer("VICTOR_METRICS_PORT", 0, maximum=65535)
    profile = env.choice("VICTOR_PROFILE", "development", ("development", "production"))
    api_keys = env.secrets("VICTOR_API_KEYS", "VICTOR_API_KEY")
    if profile == "production" and not api_keys:
        raise SettingsError(
            "VICTOR_API_KEYS",
            "the production profile needs at least one API key; set VICTOR_API_KEYS=key[,key...]",
        )
    redis_url = env.url("REDIS_URL", ("redis", "rediss", "unix"))
    rate_limit = env.rate("VICTOR_RATE_LIMIT")
    if rate_limit is not None and redis_url is None:
        raise SettingsError(
            "VICTOR_RATE_LIMIT", "the limit is counted in Redis, shared by every replica; set REDIS_URL"
        )
    event_token = env.secret("VICTOR_EVENT_TOKEN")
    oidc_issuer = env.url("VICTOR_OIDC_ISSUER", ("http", "https"))
    event_auth = event_auth_mode(env, profile, event_token)
    if event_auth == "token" and event_token is None:
        raise SettingsError(
            "VICTOR_EVENT_TOKEN", "VICTOR_EVENT_AUTH=token needs the shared token; set VICTOR_EVENT_TOKEN"
        )
    if event_auth == "oidc" and oidc_issuer is None:
        raise SettingsError(
            "VICTOR_OIDC_ISSUER",
            "VICTOR_EVENT_AUTH=oidc needs the token issuer's URL, e.g. https://kubernetes.default.svc",
        )
    return Settings(
        profile=profile,  # type: ignore[arg-type]
        log_level=level,
        debug=debug,
        log_file=env.optional("VICTOR_LOG_FILE"),
        log_retention_days=env.integer("VICTOR_LOG_RETENTION_DAYS", 7, minimum=1),
        log_max_size=env.size("VICTOR_LOG_MAX_SIZE", 10 * 1024 * 1024),
        port=env.integer("PORT", 8080, minimum=1, maximum=65535),
        metrics_port=metrics_port or None,
        redis_url=redis_url,
        database_url=Secret(database_url) if database_url else None,
        lancedb_uri=env.string("LANCEDB_URI", "data/lancedb"),
        cache_ttl=env.integer("VICTOR_CACHE_TTL", 3600, minimum=1),
        enable_tool_cache=env.boolean("VICTOR_ENABLE_TOOL_CACHE", True),
        tool_cache_size=env.integer("VICTOR_TOOL_CACHE_SIZE", 1000, minimum=0),
        tool_cache_ttl=env.integer("VICTOR_TOOL_CACHE_TTL", 3600, minimum=1),
        max_concurrent_tools=env.integer("VICTOR_MAX_CONCURRENT_TOOLS", 10, minimum=1, maximum=1000),
        enable_parallel_execution=env.boolean("VICTOR_ENABLE_PARALLEL_EXECUTION", True),
        workspace_dir=Path(env.string("WORKSPACE_DIR", ".")).expanduser().resolve(),
        anthropic_api_key=env.secret("ANTHROPIC_API_KEY"),
        anthropic_base_url=env.url("ANTHROPIC_BASE_URL", ("http", "https")),
        openai_api_key=env.secret("OPENAI_API_KEY"),
        openai_base_url=env.url("OPENAI_BASE_URL", ("http", "https")),
        embedding_model=env.string("VICTOR_EMBEDDING_MODEL", "BAAI/bge-small-en-v1.5"),
        embedding_backend=env.choice("VICTOR_EMBEDDING_BACKEND", "auto", ("auto", "onnx", "torch")),
        broker_url=env.url("VICTOR_BROKER_URL", ("http", "https"), "K_SINK"),
        otel_exporter_otlp_endpoint=env.url("OTEL_EXPORTER_OTLP_ENDPOINT", ("http", "https")),
        api_keys=api_keys,
        rate_limit=rate_limit,
        event_auth=event_auth,  # type: ignore[arg-type]
        event_token=event_token,
        oidc_issuer=oidc_issuer,
        oidc_audience=env.optional("VICTOR_OIDC_AUDIENCE", "K_SERVICE"),
        oidc_token_file=env.optional("VICTOR_OIDC_TOKEN_FILE"),
        max_event_bytes=env.size("VICTOR_MAX_EVENT_BYTES", 4 * 1024 * 1024),
        function_urls=function_urls,
        secret_files=secret_file_patterns(env),
        http_limits=http_limit_settings(env),
    )


def event_auth_mode(env: EnvReader, profile: str, token: Secret | None) -> str:
    """VICTOR_EVENT_AUTH; unset, it is none in development and on in production (token when one is set)."""
    mode = env.choice("VICTOR_EVENT_AUTH", "", EVENT_AUTH_MODES)
    if mode:
        return mode
    if profile != "production":
        return "none"
    return "token" if token is not None else "oidc"


def secret_file_patterns(env: EnvReader) -> tuple[str, ...]:
    """VICTOR_SECRET_FILES: comma-separated name globs that replace the default list."""
    raw = env.optional("VICTOR_SECRET_FILES")
    if raw is None:
        return SECRET_FILES
    patterns = tuple(part.strip() for part in raw.split(",") if part.strip())
    for pattern in patterns:
        if "/" in pattern:
            raise SettingsError(
                "VICTOR_SECRET_FILES", f"expected file-name globs such as .env or *.pem, got {pattern!r}"
            )
    return patterns


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()
