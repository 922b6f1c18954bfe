"""A real OIDC issuer for tests: an RSA key, its discovery document and JWKS over HTTP, signed tokens.

`issuer()` serves `/.well-known/openid-configuration` (naming `jwks_uri`) and
`/keys` from a local server, as the Kubernetes API server does for its
service-account tokens; `OidcIssuer.token` signs JWTs with PyJWT.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.servers import running


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class OidcIssuer:
    """The issuer's URL and signing key; `requests` counts what was fetched from it, per path."""

    url: str = ""
    key: rsa.RSAPrivateKey = field(default_factory=rsa_key)
    kid: str = "test-key-1"
    requests: dict[str, int] = field(default_factory=dict)

    def token(
        self,
        audience: str,
        *,
        expires_in: float = 300,
        issuer: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
        subject: str = "system:serviceaccount:victor:default-broker-oidc",
    ) -> str:
        """A JWT for `audience`, signed with the issuer's key (or `key`), expiring in `expires_in` seconds."""
        now = int(time.time())
        claims = {
            "iss": issuer or self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + int(expires_in),
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.requests[path] = self.requests.get(path, 0) + 1
        if path == "/.well-known/openid-configuration":
            body: dict[str, Any] = {"issuer": self.url, "jwks_uri": f"{self.url}/keys"}
        elif path == "/keys":
            public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
            body = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@contextlib.asynccontextmanager
async def issuer() -> AsyncIterator[OidcIssuer]:
    """A served issuer; its `url` is set once it listens."""
    served = OidcIssuer()
    async with running(served) as url:
        served.url = url
        yield served
