"""CDS Hooks 2.0.1 client JWT validation (spec section "Trusting CDS Clients")."""
from __future__ import annotations

import json
import os
import threading
import time

import jwt
import requests

SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
# Public key only; the matching private key is published too, so trust it in development only.
SANDBOX_JWKS = {"keys": [{
    "kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig",
    "kid": "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f",
    "x": "dw_JGR8nB2I6XveNxUOl2qk699ZPLM2nYI5STSdiEl9avAkrm3CkfYMbrrjr8laB",
    "y": "Sm3mLE-n1zYNla_aiE3cb3nZsL51RbC7ysw3q8aJLxGm-hx79RPMYpITDjp7kgzy",
}]}
ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
JWKS_TIMEOUT = 2.0


class AuthError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _is_url(source) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://"))


class _MemoryJtiStore:
    """Default replay cache for a single process (tests, one worker)."""

    def __init__(self, clock):
        self.clock, self.seen, self.lock = clock, {}, threading.Lock()

    def __call__(self, issuer: str, jti: str, expires_at: float) -> bool:
        with self.lock:
            now = self.clock()
            self.seen = {k: t for k, t in self.seen.items() if t >= now}
            if (issuer, jti) in self.seen:
                return False
            self.seen[(issuer, jti)] = expires_at
            return True


class Authenticator:
    def __init__(self, issuers, algorithms=("ES384", "RS384"), leeway: int = 60, claim_jti=None,
                 session=None, refetch_interval: float = 60.0, clock=time.time, known_jku=None):
        """issuers: {iss: JWKS URL | JWKS file path | JWKS dict}. known_jku: {iss: URL} for issuers
        whose keys are configured statically but whose tokens carry a `jku` header (the Sandbox)."""
        bad = set(algorithms) - ASYMMETRIC_ALGORITHMS
        if bad or not algorithms:
            raise ValueError(f"unsupported JWT algorithms {sorted(bad)}; allowed: {sorted(ASYMMETRIC_ALGORITHMS)}")
        for iss, source in issuers.items():
            if isinstance(source, dict) or _is_url(source):
                continue
            if not isinstance(source, str) or not os.path.isfile(source):
                raise ValueError(f"issuer {iss!r}: JWKS must be an http(s) URL, an existing file or a dict")
        self.issuers = dict(issuers)
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.clock = clock
        self.claim_jti = claim_jti or _MemoryJtiStore(clock)
        self.session = session or requests.Session()
        self.refetch_interval = refetch_interval
        self.known_jku = dict(known_jku or {})
        self._keys: dict[str, dict[str, dict]] = {}
        self._fetched_at: dict[str, float] = {}
        self._locks = {iss: threading.Lock() for iss in self.issuers}

    def _load(self, iss: str) -> dict[str, dict]:
        source = self.issuers[iss]
        try:
            if isinstance(source, dict):
                jwks = source
            elif _is_url(source):
                response = self.session.get(source, timeout=JWKS_TIMEOUT, headers={"Accept": "application/json"})
                response.raise_for_status()
                jwks = response.json()
            else:
                with open(source, encoding="utf-8") as f:
                    jwks = json.load(f)
            keys = jwks["keys"]
            assert isinstance(keys, list)
        except (requests.RequestException, OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            raise AuthError(f"cannot load JWKS of issuer {iss}: {type(e).__name__}") from None
        return {k["kid"]: k for k in keys
                if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"}

    def _find_key(self, iss: str, kid: str) -> dict:
        with self._locks[iss]:
            keys = self._keys.get(iss)
            if keys is None or kid not in keys:
                last = self._fetched_at.get(iss)
                if last is None or self.clock() - last >= self.refetch_interval:
                    self._fetched_at[iss] = self.clock()  # failures are rate-limited too
                    keys = self._keys[iss] = self._load(iss)
            if keys is None:
                raise AuthError(f"JWKS of issuer {iss} unavailable")
            if kid not in keys:
                raise AuthError(f"unknown kid {kid!r} for issuer {iss}")
            return keys[kid]

    def verify(self, authorization: str | None, audience: str) -> dict:
        if not authorization:
            raise AuthError("missing Authorization header")
        parts = authorization.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise AuthError("Authorization header must be 'Bearer <JWT>'")
        token = parts[1]
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("malformed JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError(f"JWT alg {alg!r} not allowed")
        # CDS Hooks 2.0.1 makes typ REQUIRED ("JWT"); every client we know sends it (the Sandbox does).
        # A token without it is refused: it may be another kind of JWT of the same issuer.
        if str(header.get("typ", "")).upper() != "JWT":
            raise AuthError("JWT typ must be 'JWT'")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("JWT kid missing")
        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self.issuers:
            raise AuthError(f"untrusted issuer {iss!r}")
        jku = header.get("jku")
        if jku is not None and jku not in (self.issuers[iss], self.known_jku.get(iss)):
            raise AuthError(f"jku {jku!r} not allowed for issuer {iss}")

        jwk = self._find_key(iss, kid)
        if jwk.get("alg", alg) != alg:
            raise AuthError(f"key {kid!r} is for alg {jwk.get('alg')!r}, not {alg!r}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            raise AuthError(f"key {kid!r} cannot be used with alg {alg!r}") from None
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=audience, issuer=iss, leeway=self.leeway,
                                options={"require": ["iss", "aud", "exp", "iat", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (iat/nbf in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"aud does not match {audience}") from None
        except jwt.MissingRequiredClaimError as e:
            raise AuthError(f"missing claim {e.claim}") from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid signature") from None
        except jwt.PyJWTError as e:
            raise AuthError(f"invalid token: {e}") from None
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError("missing claim jti (a non-empty string)")
        if not self.claim_jti(iss, claims["jti"], float(claims["exp"]) + self.leeway):
            raise AuthError("token replayed")
        return claims


def parse_trusted_issuers(text: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """CDS_TRUSTED_ISSUERS: {issuer: JWKS URL or file} or {issuer: {"jwks": ..., "fhir_servers": [base URLs]}}.
    Returns ({issuer: JWKS source}, {issuer: FHIR base URLs it may name}, for the issuers that list them)."""
    if not text or not text.strip():
        return {}, {}
    try:
        entries = json.loads(text)
    except ValueError:
        raise ValueError("CDS_TRUSTED_ISSUERS is not valid JSON") from None
    shape = ("CDS_TRUSTED_ISSUERS must be a JSON object {issuer: JWKS URL or file path} or "
             "{issuer: {\"jwks\": URL or file path, \"fhir_servers\": [FHIR base URLs]}}")
    if not isinstance(entries, dict):
        raise ValueError(shape)
    jwks, servers = {}, {}
    for iss, entry in entries.items():
        if isinstance(entry, dict):
            source, bases = entry.get("jwks"), entry.get("fhir_servers", [])
            if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases) \
                    or set(entry) - {"jwks", "fhir_servers"}:
                raise ValueError(shape)
            if "fhir_servers" in entry:
                servers[iss] = bases
        else:
            source = entry
        if not isinstance(source, str) or not source:
            raise ValueError(shape)
        jwks[iss] = source
    return jwks, servers


def from_settings(trusted_issuers_json: str, algorithms_csv: str, leeway: int, development: bool,
                  claim_jti=None, session=None) -> Authenticator:
    issuers, _ = parse_trusted_issuers(trusted_issuers_json)
    if not development:
        if SANDBOX_ISSUER in issuers:
            raise ValueError("CDS_TRUSTED_ISSUERS: the Sandbox issuer's private key is public; never trust it in production")
        if not issuers:
            raise ValueError("CDS_TRUSTED_ISSUERS is required in production: no CDS client could be authenticated")
        if any(v.startswith("http://") for v in issuers.values()):
            raise ValueError("CDS_TRUSTED_ISSUERS: JWKS URLs must be https in production")
    known_jku = {}
    if development and SANDBOX_ISSUER not in issuers:
        issuers[SANDBOX_ISSUER] = SANDBOX_JWKS
        known_jku[SANDBOX_ISSUER] = SANDBOX_JKU
    algorithms = tuple(a.strip() for a in (algorithms_csv or "").split(",") if a.strip())
    if not algorithms or set(algorithms) - ASYMMETRIC_ALGORITHMS:
        raise ValueError(f"CDS_ALLOWED_ALGORITHMS={algorithms_csv!r}: use some of {sorted(ASYMMETRIC_ALGORITHMS)}")
    try:
        return Authenticator(issuers, algorithms=algorithms, leeway=leeway, claim_jti=claim_jti,
                             session=session, known_jku=known_jku)
    except ValueError as e:
        raise ValueError(f"CDS_TRUSTED_ISSUERS: {e}") from None
