"""CDS Hooks 2.0.1 client JWT validation (spec section "Trusting CDS Clients")."""
from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass

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
# A JWKS fetch: at most JWKS_DEADLINE seconds in all (the caller stops waiting then, whatever the
# server does), each socket read at most JWKS_READ_TIMEOUT, JWKS_MAX_BYTES, no redirect followed.
JWKS_DEADLINE = 2.0
JWKS_CONNECT_TIMEOUT = 1.0
JWKS_READ_TIMEOUT = 0.5
JWKS_MAX_BYTES = 256 * 1024
# Keys are fetched again when they are older than the JWKS's Cache-Control max-age, bounded to
# [refetch_interval, max_age] (default 60 s to 300 s), so a key the issuer removed is refused at
# most max_age + JWKS_DEADLINE seconds later. While the issuer's JWKS cannot be fetched, the last
# keys stay in use for at most JWKS_STALE_GRACE seconds past their age, then every token is refused.
JWKS_MAX_AGE = 300.0
JWKS_STALE_GRACE = 3600.0
MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)")


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


@dataclass(frozen=True)
class KeySet:
    keys: dict[str, dict]
    fresh_until: float   # clock time after which the keys are fetched again


class Authenticator:
    def __init__(self, issuers, algorithms=("ES384", "RS384"), leeway: int = 60, claim_jti=None,
                 session=None, refetch_interval: float = 60.0, clock=time.time, known_jku=None,
                 max_lifetime: int = 600, max_age: float = JWKS_MAX_AGE):
        """issuers: {iss: JWKS URL | JWKS file path | JWKS dict}. known_jku: {iss: URL} for issuers
        whose keys are configured statically but whose tokens carry a `jku` header (the Sandbox).
        refetch_interval: the least time between two fetches of one issuer's JWKS (a failed fetch, a
        token with an unknown kid); max_age: the most time the keys are kept without a fetch.
        max_lifetime: the longest a token may live (exp - iat) and the oldest its iat may be."""
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
        self.max_age = max(max_age, refetch_interval)
        self.max_lifetime = max_lifetime
        self.known_jku = dict(known_jku or {})
        self._keysets: dict[str, KeySet] = {}
        self._attempted: dict[str, float] = {}         # clock time of the last fetch started
        self._fetches: dict[str, threading.Event] = {}  # the fetch under way, per issuer
        self._lock = threading.Lock()                   # held for bookkeeping only, never across a fetch

    def _fetch_url(self, url: str) -> tuple[object, str]:
        """The JWKS document at url and its Cache-Control header; raises on anything but a 200."""
        deadline = time.monotonic() + JWKS_DEADLINE
        with self.session.get(url, timeout=(JWKS_CONNECT_TIMEOUT, JWKS_READ_TIMEOUT), stream=True,
                              allow_redirects=False, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(16384):
                body += chunk
                if len(body) > JWKS_MAX_BYTES or time.monotonic() > deadline:
                    raise ValueError("JWKS too large or too slow")
            return json.loads(body), response.headers.get("Cache-Control", "")

    def _load(self, iss: str) -> KeySet:
        source, cache_control = self.issuers[iss], ""
        try:
            if isinstance(source, dict):
                jwks = source
            elif _is_url(source):
                jwks, cache_control = self._fetch_url(source)
            else:
                with open(source, encoding="utf-8") as f:
                    jwks = json.load(f)
            keys = jwks["keys"]
            assert isinstance(keys, list)
        except (requests.RequestException, OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            raise AuthError(f"cannot load JWKS of issuer {iss}: {type(e).__name__}") from None
        found = MAX_AGE.search(cache_control.lower())
        age = min(max(float(found[1]) if found else self.max_age, self.refetch_interval), self.max_age)
        return KeySet({k["kid"]: k for k in keys
                       if isinstance(k, dict) and isinstance(k.get("kid"), str) and k.get("use", "sig") == "sig"},
                      self.clock() + age)

    def _fetch(self, iss: str, done: threading.Event, result: list) -> None:
        try:
            keyset = self._load(iss)
            with self._lock:
                self._keysets[iss] = keyset
        except AuthError as exc:
            result.append(exc)
        except Exception as exc:  # noqa: BLE001 (a thread of its own: whatever failed is a failed fetch)
            result.append(AuthError(f"cannot load JWKS of issuer {iss}: {type(exc).__name__}"))
        finally:
            with self._lock:
                if self._fetches.get(iss) is done:
                    del self._fetches[iss]
            done.set()

    def _find_key(self, iss: str, kid: str) -> dict:
        """The key `kid` of issuer iss. The keys are fetched again when they are older than their
        max-age, or when a kid is unknown, at most once per refetch_interval; the call that starts
        a fetch waits for it at most JWKS_DEADLINE, and no other call waits for it, except while
        the issuer has no keys at all: a slow JWKS endpoint never holds up calls with known keys."""
        now = self.clock()
        with self._lock:
            keyset, running = self._keysets.get(iss), self._fetches.get(iss)
            due = keyset is None or now >= keyset.fresh_until or kid not in keyset.keys
            # at most one fetch per refetch_interval; one still running by then was given up on
            start = due and now - self._attempted.get(iss, float("-inf")) >= self.refetch_interval
            if start:
                self._attempted[iss] = now  # failures are rate-limited too
                running = self._fetches[iss] = threading.Event()
                result: list = []
                threading.Thread(target=self._fetch, args=(iss, running, result), daemon=True,
                                 name="cds-jwks-fetch").start()
        if start or (keyset is None and running is not None):
            running.wait(JWKS_DEADLINE)
            with self._lock:
                keyset = self._keysets.get(iss)
            if start and keyset is None:
                raise result[0] if result else AuthError(f"cannot load JWKS of issuer {iss}: timeout")
        if keyset is None:
            raise AuthError(f"JWKS of issuer {iss} unavailable")
        if self.clock() > keyset.fresh_until + JWKS_STALE_GRACE:
            raise AuthError(f"JWKS of issuer {iss} could not be fetched again for too long")
        if kid not in keyset.keys:
            raise AuthError(f"unknown kid {kid!r} for issuer {iss}")
        return keyset.keys[kid]

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
        oldest = time.time() - self.max_lifetime - self.leeway
        if claims["exp"] - claims["iat"] > self.max_lifetime or claims["iat"] < oldest:
            raise AuthError(f"token lifetime over {self.max_lifetime} s (exp - iat), or iat older than that")
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
                  claim_jti=None, session=None, max_lifetime: int = 600,
                  max_age: float = JWKS_MAX_AGE) -> Authenticator:
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
                             session=session, known_jku=known_jku, max_lifetime=max_lifetime, max_age=max_age)
    except ValueError as e:
        raise ValueError(f"CDS_TRUSTED_ISSUERS: {e}") from None
