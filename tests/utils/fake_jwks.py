"""A real JWKS endpoint on 127.0.0.1 serving an ES256 and an RS256 public key."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa


class FakeJWKS:
    def __init__(self) -> None:
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.hits = 0
        self.status = 200
        self.keys = [
            self._jwk(self.ec_key.public_key(), "ec-1", "ES256"),
            self._jwk(self.rsa_key.public_key(), "rsa-1", "RS256"),
        ]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake.hits += 1
                body = json.dumps({"keys": fake.keys}).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/auth/v1/.well-known/jwks.json"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
        algorithm = jwt.algorithms.ECAlgorithm if alg == "ES256" else jwt.algorithms.RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(public_key))
        return {**jwk, "kid": kid, "alg": alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], *, alg: str = "ES256", kid: str | None = None) -> str:
        key = self.ec_key if alg == "ES256" else self.rsa_key
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid or ("ec-1" if alg == "ES256" else "rsa-1")})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def claims_for(user_id: str, *, ttl: int = 3600, aud: str = "authenticated", **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "aud": aud, "role": "authenticated", "iat": now, "exp": now + ttl, **extra}
