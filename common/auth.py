"""Who may call a function: API keys on its own routes, credentials on delivered events.

API keys (VICTOR_API_KEYS, several for rotation) open the `/v1` routes. Delivered
events (`POST /` on every function, the broker ingress) are authenticated as
VICTOR_EVENT_AUTH says, the way Knative Eventing does it:

- `token`: a shared secret (VICTOR_EVENT_TOKEN) as `Authorization: Bearer <token>`;
  the local broker adds it to every delivery and functions add it to what they publish.
- `oidc`: Knative's sender identity. The broker sends a JWT whose audience is the
  subscriber's; it is verified against the issuer's keys (OIDC discovery →
  `jwks_uri`, cached), and for issuer, audience (VICTOR_OIDC_AUDIENCE, default
  `K_SERVICE` or `victor-<function>`) and expiry.

Every failure is a 401 `Refusal` with `WWW-Authenticate: Bearer`, the same in both
serving modes; the broker does not retry a 401 (Knative's retryable list lacks it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from common.answers import Refusal
from common.settings import Settings

if TYPE_CHECKING:
    import jwt

log = logging.getLogger(__name__)
API_KEY_REQUIRED = "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
CHALLENGE = {"www-authenticate": "Bearer"}
# Asymmetric algorithms only: a key from a JWKS must never be usable as an HMAC secret.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
# How long fetched signing keys are trusted before the JWKS is read again.
JWKS_LIFESPAN_SECONDS = 300
_DISCOVERY_TIMEOUT_SECONDS = 5.0


def unauthorized(message: str) -> Refusal:
    """401 `unauthorized` with the Bearer challenge."""
    return Refusal(401, message, "unauthorized", headers=CHALLENGE)


def bearer(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer` header ("" when there is none)."""
    authorization = next((value for key, value in headers.items() if key.lower() == "authorization"), "")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else ""


def offered_api_key(headers: Mapping[str, str]) -> str:
    """The key a request offers: the Bearer token, else X-API-Key."""
    return bearer(headers) or next(
        (value for key, value in headers.items() if key.lower() == "x-api-key"), ""
    )


def matching_api_key(settings: Settings, headers: Mapping[str, str]) -> str | None:
    """The configured key the request offers (None when it offers none of them)."""
    offered = offered_api_key(headers).encode()
    found = None
    for key in settings.api_keys:  # every key is compared, so timing tells nothing of which matched
        if hmac.compare_digest(offered, key.reveal().encode()) and offered:
            found = key.reveal()
    return found


def check_api_key(settings: Settings, headers: Mapping[str, str]) -> str | None:
    """The matched key (None when no key is configured); raises the 401 refusal otherwise."""
    if not settings.api_keys:
        return None
    key = matching_api_key(settings, headers)
    if key is None:
        raise unauthorized(API_KEY_REQUIRED)
    return key


async def authenticate_event(settings: Settings, audience: str, headers: Mapping[str, str]) -> None:
    """Return when a delivered event's credentials satisfy VICTOR_EVENT_AUTH; raise the 401 otherwise.

    `audience` is this receiver's OIDC audience when VICTOR_OIDC_AUDIENCE is unset.
    An issuer that cannot be reached is a 503 (the sender retries), not a 401.
    """
    if settings.event_auth == "none":
        return
    token = bearer(headers)
    if not token:
        raise unauthorized(
            f"delivered events need credentials ({settings.event_auth}): send 'Authorization: Bearer <token>'"
        )
    if settings.event_auth == "token":
        expected = settings.event_token.reveal() if settings.event_token else ""
        if not hmac.compare_digest(token.encode(), expected.encode()) or not expected:
            raise unauthorized("the event token is not valid (VICTOR_EVENT_TOKEN)")
        return
    assert settings.oidc_issuer is not None  # load_settings refuses oidc without an issuer
    await issuer_keys(settings.oidc_issuer).verify(token, settings.oidc_audience or audience)


class IssuerKeys:
    """The signing keys of one OIDC issuer: its discovery document read once, its JWKS cached."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self._client: jwt.PyJWKClient | None = None

    def _jwks_client(self) -> jwt.PyJWKClient:
        if self._client is None:
            import jwt  # PyJWT and cryptography load on the first OIDC event, off every cold start

            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            with urllib.request.urlopen(url, timeout=_DISCOVERY_TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only
                document = json.loads(response.read())
            self._client = jwt.PyJWKClient(
                str(document["jwks_uri"]),
                lifespan=JWKS_LIFESPAN_SECONDS,
                timeout=int(_DISCOVERY_TIMEOUT_SECONDS),
            )
        return self._client

    def _verify(self, token: str, audience: str) -> None:
        import jwt

        try:
            key = self._jwks_client().get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Refusal.unavailable(
                f"the OIDC issuer's keys cannot be read: {exc}", "oidc_unavailable"
            ) from None
        except (OSError, ValueError, KeyError) as exc:  # discovery unreachable or not an OIDC document
            raise Refusal.unavailable(
                f"the OIDC discovery document of {self.issuer} cannot be read: {type(exc).__name__}",
                "oidc_unavailable",
            ) from None
        except jwt.PyJWTError as exc:  # not a JWT, or signed with a key the issuer does not publish
            raise unauthorized(f"the event's OIDC token is not valid: {exc}") from None
        try:
            jwt.decode(
                token,
                key.key,
                algorithms=OIDC_ALGORITHMS,
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("the event's OIDC token has expired") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"the event's OIDC token is not valid: {exc}") from None

    async def verify(self, token: str, audience: str) -> None:
        """Return when `token` is signed by the issuer, for `audience`, unexpired; else raise a `Refusal`."""
        # PyJWKClient reads the JWKS with blocking urllib; a thread keeps the event loop free.
        await asyncio.to_thread(self._verify, token, audience)


_issuers: dict[str, IssuerKeys] = {}


def issuer_keys(issuer: str) -> IssuerKeys:
    """The process's cached keys of `issuer`."""
    known = _issuers.get(issuer)
    if known is None:
        known = _issuers[issuer] = IssuerKeys(issuer)
    return known


def event_credentials(settings: Settings) -> dict[str, str]:
    """Headers that authenticate an event this process sends (to the broker, or a subscriber).

    token: the shared token; oidc: the token in VICTOR_OIDC_TOKEN_FILE (a projected
    service-account token, read on every send because the kubelet rotates it); else none.
    """
    if settings.event_auth == "token" and settings.event_token is not None:
        return {"authorization": f"Bearer {settings.event_token.reveal()}"}
    if settings.event_auth == "oidc" and settings.oidc_token_file:
        try:
            token = Path(settings.oidc_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.warning("cannot read VICTOR_OIDC_TOKEN_FILE: %s", exc)
            return {}
        return {"authorization": f"Bearer {token}"}
    return {}
