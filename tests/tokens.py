"""A trusted CDS client for production-mode tests: a key pair, its JWKS file, and signed tokens."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://ehr.example.org"
KID = "test-key-1"


class Client:
    def __init__(self, directory: Path):
        self.key = ec.generate_private_key(ec.SECP384R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=KID, alg="ES384", use="sig")
        self.jwks_file = directory / "jwks.json"
        self.jwks_file.write_text(json.dumps({"keys": [jwk]}))

    def config(self, database: Path, fhir_servers: list[str] | None = None, **extra) -> dict:
        """create_app() overrides for a production app that trusts this client (and lets it name
        these FHIR servers)."""
        entry = {"jwks": str(self.jwks_file), "fhir_servers": fhir_servers} if fhir_servers else str(self.jwks_file)
        return {"env": "production", "trusted_issuers": json.dumps({ISSUER: entry}),
                "public_base_url": "http://localhost", "database_url": f"sqlite:///{database}", "db_schema": "migrate",
                **extra}

    def token(self, audience: str, **claims) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
        return jwt.encode(payload, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})

    def headers(self, audience: str) -> dict:
        return {"Authorization": f"Bearer {self.token(audience)}"}
