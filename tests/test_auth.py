"""JWT validation for CDS clients (cds_service.auth)."""
import base64
import hashlib
import hmac
import io
import json
import socket
import threading
import time
import uuid

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cds_service.auth import (SANDBOX_ISSUER, SANDBOX_JKU, SANDBOX_JWKS, AuthError, Authenticator,
                              from_settings)

ISS = "https://ehr.example.org"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
AUD = "https://cds.example.org/cds-services/pama-imaging"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NEW_EC_KEY = ec.generate_private_key(ec.SECP384R1())   # published after a key rotation
P521_KEY = ec.generate_private_key(ec.SECP521R1())
P256_KEY = ec.generate_private_key(ec.SECP256R1())
THROWAWAY_KEY = ec.generate_private_key(ec.SECP384R1())


def jwk(private_key, kid, alg):
    algorithm = RSAAlgorithm if alg.startswith("RS") else ECAlgorithm
    return {**algorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": kid, "alg": alg, "use": "sig"}


JWKS = {"keys": [jwk(EC_KEY, "ec1", "ES384"), jwk(RSA_KEY, "rsa1", "RS384")]}
ROTATED_JWKS = {"keys": JWKS["keys"] + [jwk(NEW_EC_KEY, "ec2", "ES384")]}


def claims(**changes):
    now = int(time.time())
    payload = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def token(key=EC_KEY, alg="ES384", kid="ec1", headers=None, **changes):
    header = {"typ": "JWT", "kid": kid, **(headers or {})}
    header = {k: v for k, v in header.items() if v is not None}
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=header)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def manual(header, payload, sign=lambda signing_input: b""):
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hs256_with_public_key():
    pem = EC_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return manual({"alg": "HS256", "typ": "JWT", "kid": "ec1"}, claims(),
                  lambda data: hmac.new(pem, data, hashlib.sha256).digest())


def tampered():
    head, payload, sig = token().split(".")
    middle = len(sig) // 2
    return f"{head}.{payload}.{sig[:middle]}{'A' if sig[middle] != 'A' else 'B'}{sig[middle + 1:]}"


def bearer(make):
    return lambda: f"Bearer {make()}"


CASES = [
    ("good ES384", bearer(token), None),
    ("good RS384", bearer(lambda: token(RSA_KEY, "RS384", "rsa1")), None),
    ("good with configured jku", bearer(lambda: token(headers={"jku": JWKS_URL})), None),
    # typ is REQUIRED by CDS Hooks 2.0.1 (PyJWT drops a typ given as None, adds "JWT" when none is given)
    ("missing typ", bearer(lambda: jwt.encode(claims(), EC_KEY, algorithm="ES384",
                                              headers={"kid": "ec1", "typ": None})), "typ must be 'JWT'"),
    ("aud array containing the URL", bearer(lambda: token(aud=["https://other.example", AUD])), None),
    ("iat 2 s in future (leeway)", bearer(lambda: token(iat=int(time.time()) + 2)), None),
    ("no sub, no tenant required", bearer(lambda: token(sub=None, tenant=None)), None),
    ("HS256 signed with public key", bearer(hs256_with_public_key), "alg 'HS256' not allowed"),
    ("ES512 not allowed", bearer(lambda: token(P521_KEY, "ES512")), "alg 'ES512' not allowed"),
    ("alg none", bearer(lambda: manual({"alg": "none", "typ": "JWT", "kid": "ec1"}, claims())),
     "alg 'none' not allowed"),
    ("RS384 header with EC key id", bearer(lambda: token(RSA_KEY, "RS384", "ec1")), "is for alg 'ES384'"),
    ("wrong typ", bearer(lambda: token(headers={"typ": "at+jwt"})), "typ must be 'JWT'"),
    ("wrong iss", bearer(lambda: token(iss="https://evil.example")), "untrusted issuer"),
    ("missing iss", bearer(lambda: token(iss=None)), "untrusted issuer"),
    ("unknown kid", bearer(lambda: token(NEW_EC_KEY, kid="ec2")), "unknown kid 'ec2'"),
    ("jku not the configured URL", bearer(lambda: token(headers={"jku": "https://evil.example/jwks.json"})),
     "jku 'https://evil.example/jwks.json' not allowed"),
    ("wrong aud", bearer(lambda: token(aud="https://cds.example.org/cds-services")), "aud does not match"),
    ("aud array without the URL", bearer(lambda: token(aud=["https://other.example"])), "aud does not match"),
    ("missing aud", bearer(lambda: token(aud=None)), "missing claim aud"),
    ("expired", bearer(lambda: token(exp=int(time.time()) - 120)), "token expired"),
    ("iat 10 min in future", bearer(lambda: token(iat=int(time.time()) + 600)), "not yet valid"),
    ("missing exp", bearer(lambda: token(exp=None)), "missing claim exp"),
    ("missing iat", bearer(lambda: token(iat=None)), "missing claim iat"),
    ("missing jti", bearer(lambda: token(jti=None)), "missing claim jti"),
    ("empty jti", bearer(lambda: token(jti="")), "missing claim jti"),
    ("missing kid", bearer(lambda: token(kid=None)), "kid missing"),
    ("tampered signature", bearer(tampered), "invalid signature"),
    ("signed by another key", bearer(lambda: token(THROWAWAY_KEY)), "invalid signature"),
    ("missing header", lambda: None, "missing Authorization header"),
    ("empty header", lambda: "", "missing Authorization header"),
    ("non-Bearer header", lambda: f"Basic {token()}", "Bearer <JWT>"),
    ("Bearer without token", lambda: "Bearer", "Bearer <JWT>"),
    ("garbage token", lambda: "Bearer not.a.jwt", "malformed JWT"),
]


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(JWKS_URL, json=JWKS)
        yield rsps


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def auth(mocked, clock):
    return Authenticator({ISS: JWKS_URL}, clock=clock)


@pytest.mark.parametrize("make,error", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_token_table(auth, make, error):
    header = make()
    if error is None:
        assert auth.verify(header, AUD)["iss"] == ISS
    else:
        with pytest.raises(AuthError) as excinfo:
            auth.verify(header, AUD)
        assert error in excinfo.value.message


def test_jwks_fetched_once_with_timeout_and_cached(auth, mocked):
    auth.verify(f"Bearer {token()}", AUD)
    auth.verify(f"Bearer {token(RSA_KEY, 'RS384', 'rsa1')}", AUD)
    assert len(mocked.calls) == 1
    assert mocked.calls[0].request.req_kwargs["timeout"] == (1.0, 0.5)  # connect, each read; 2 s in all


def test_replayed_jti(auth):
    header = f"Bearer {token()}"
    auth.verify(header, AUD)
    with pytest.raises(AuthError, match="token replayed"):
        auth.verify(header, AUD)


def test_claim_jti_receives_issuer_jti_and_expiry():
    seen = []
    auth = Authenticator({ISS: JWKS}, leeway=30, claim_jti=lambda *args: seen.append(args) or False,
                         max_lifetime=10**10)
    with pytest.raises(AuthError, match="token replayed"):
        auth.verify(f"Bearer {token(jti='abc', exp=2_000_000_000)}", AUD)
    assert seen == [(ISS, "abc", 2_000_000_030.0)]


def test_kid_found_after_key_rotation(auth, mocked, clock):
    auth.verify(f"Bearer {token()}", AUD)
    mocked.replace(responses.GET, JWKS_URL, json=ROTATED_JWKS)
    clock.now += 61
    assert auth.verify(f"Bearer {token(NEW_EC_KEY, kid='ec2')}", AUD)["iss"] == ISS
    assert len(mocked.calls) == 2


def test_unknown_kid_refetch_is_rate_limited(auth, mocked, clock):
    auth.verify(f"Bearer {token()}", AUD)                      # fetch 1 at t=1000
    clock.now += 10
    with pytest.raises(AuthError, match="unknown kid"):
        auth.verify(f"Bearer {token(NEW_EC_KEY, kid='ec2')}", AUD)
    assert len(mocked.calls) == 1                              # within the interval: no refetch
    clock.now += 60
    with pytest.raises(AuthError, match="unknown kid"):
        auth.verify(f"Bearer {token(NEW_EC_KEY, kid='ec2')}", AUD)
    assert len(mocked.calls) == 2                              # interval elapsed: one refetch
    clock.now += 5
    with pytest.raises(AuthError, match="unknown kid"):
        auth.verify(f"Bearer {token(NEW_EC_KEY, kid='ec3')}", AUD)
    assert len(mocked.calls) == 2                              # second unknown kid: no refetch


def test_jwks_host_down_is_an_auth_error_and_rate_limited(clock):
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, body=requests.ConnectionError("down"))
        auth = Authenticator({ISS: JWKS_URL}, clock=clock)
        with pytest.raises(AuthError, match="cannot load JWKS"):
            auth.verify(f"Bearer {token()}", AUD)
        with pytest.raises(AuthError, match="JWKS of issuer .* unavailable"):
            auth.verify(f"Bearer {token()}", AUD)
        assert len(rsps.calls) == 1


def test_uses_given_session():
    session = requests.Session()
    with responses.RequestsMock() as rsps:
        rsps.get(JWKS_URL, json=JWKS)
        assert Authenticator({ISS: JWKS_URL}, session=session).verify(f"Bearer {token()}", AUD)


def test_es256_only_when_configured():
    keys = {"keys": [jwk(P256_KEY, "p256", "ES256")]}
    header = f"Bearer {token(P256_KEY, 'ES256', 'p256')}"
    with pytest.raises(AuthError, match="alg 'ES256' not allowed"):
        Authenticator({ISS: keys}).verify(header, AUD)
    assert Authenticator({ISS: keys}, algorithms=("ES384", "ES256")).verify(header, AUD)["iss"] == ISS


def test_key_without_alg_must_match_token_alg():
    keys = {"keys": [{k: v for k, v in jwk(EC_KEY, "ec1", "ES384").items() if k != "alg"}]}
    auth = Authenticator({ISS: keys}, algorithms=("ES384", "RS384"))
    assert auth.verify(f"Bearer {token()}", AUD)
    with pytest.raises(AuthError, match="cannot be used with alg 'RS384'"):
        auth.verify(f"Bearer {token(RSA_KEY, 'RS384', 'ec1')}", AUD)


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), ("ES384", "HS384"), ()])
def test_symmetric_or_none_algorithms_cannot_be_configured(algorithms):
    with pytest.raises(ValueError):
        Authenticator({ISS: JWKS}, algorithms=algorithms)


def sandbox_style(key=THROWAWAY_KEY, aud="http://127.0.0.1:5000/cds-services"):
    """Shaped like the Sandbox's token (cds-hooks.md 12.6): jku header, no sub, no tenant."""
    now = int(time.time())
    payload = {"iss": SANDBOX_ISSUER, "aud": aud, "exp": now + 300, "iat": now + 1, "jti": str(uuid.uuid4())}
    return "Bearer " + jwt.encode(payload, key, algorithm="ES384",
                                  headers={"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU})


def test_sandbox_jwks_is_a_valid_p384_key():
    key = jwt.PyJWK(SANDBOX_JWKS["keys"][0])
    assert key.key_id == SANDBOX_KID and key.algorithm_name == "ES384"
    assert isinstance(key.key, ec.EllipticCurvePublicKey) and key.key.curve.name == "secp384r1"


def test_development_trusts_sandbox_key_but_not_forged_tokens():
    auth = from_settings("", "ES384,RS384", 60, development=True)
    assert auth.issuers[SANDBOX_ISSUER] == SANDBOX_JWKS
    # Throwaway key claiming the Sandbox's iss, kid and jku: the key lookup succeeds, the signature fails.
    with pytest.raises(AuthError, match="invalid signature"):
        auth.verify(sandbox_style(), "http://127.0.0.1:5000/cds-services")


def test_sandbox_shaped_token_with_jku_accepted_when_key_matches():
    keys = {"keys": [jwk(THROWAWAY_KEY, SANDBOX_KID, "ES384")]}
    auth = Authenticator({SANDBOX_ISSUER: keys}, known_jku={SANDBOX_ISSUER: SANDBOX_JKU})
    assert auth.verify(sandbox_style(), "http://127.0.0.1:5000/cds-services")["iss"] == SANDBOX_ISSUER
    with pytest.raises(AuthError, match="jku .* not allowed"):
        Authenticator({SANDBOX_ISSUER: keys}).verify(sandbox_style(), "http://127.0.0.1:5000/cds-services")


def test_production_does_not_trust_sandbox():
    auth = from_settings(json.dumps({ISS: JWKS_URL}), "ES384,RS384", 60, development=False)
    assert SANDBOX_ISSUER not in auth.issuers
    with pytest.raises(AuthError, match="untrusted issuer"):
        auth.verify(sandbox_style(), "http://127.0.0.1:5000/cds-services")


@pytest.mark.parametrize("issuers, message", [
    ("", "required in production"),
    (json.dumps({ISS: "http://issuer.example.org/jwks.json"}), "must be https"),
])
def test_production_needs_trusted_https_issuers(issuers, message):
    with pytest.raises(ValueError, match=message):
        from_settings(issuers, "ES384", 60, development=False)


def test_production_refuses_sandbox_in_trusted_issuers():
    with pytest.raises(ValueError, match="CDS_TRUSTED_ISSUERS"):
        from_settings(json.dumps({SANDBOX_ISSUER: SANDBOX_JKU}), "ES384", 60, development=False)


def test_development_keeps_configured_issuers(mocked):
    auth = from_settings(json.dumps({ISS: JWKS_URL}), "ES384,RS384", 30, development=True)
    assert set(auth.issuers) == {ISS, SANDBOX_ISSUER} and auth.leeway == 30
    assert auth.verify(f"Bearer {token(RSA_KEY, 'RS384', 'rsa1')}", AUD)["iss"] == ISS


@pytest.mark.parametrize("value", ["{not json", "[]", '"https://x"', json.dumps({ISS: 1}),
                                   json.dumps({ISS: ""}), json.dumps({ISS: "no/such/jwks.json"})])
def test_bad_trusted_issuers(value):
    with pytest.raises(ValueError, match="CDS_TRUSTED_ISSUERS"):
        from_settings(value, "ES384", 60, development=False)


@pytest.mark.parametrize("value", ["", "HS256", "ES384,none", "ES384,HS512"])
def test_bad_algorithms(value):
    with pytest.raises(ValueError, match="CDS_ALLOWED_ALGORITHMS"):
        from_settings("", value, 60, development=True)


def test_algorithms_csv_with_spaces():
    auth = from_settings("", " ES384 , RS384 ,ES256", 60, development=True)
    assert auth.algorithms == ("ES384", "RS384", "ES256")


def test_local_jwks_file(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(JWKS))
    with responses.RequestsMock():                             # any HTTP request would fail the test
        auth = from_settings(json.dumps({ISS: str(path)}), "ES384,RS384", 60, development=False)
        assert auth.verify(f"Bearer {token()}", AUD)["jti"]
        with pytest.raises(AuthError, match="jku .* not allowed"):
            auth.verify(f"Bearer {token(headers={'jku': JWKS_URL})}", AUD)


def test_invalid_jwks_document_is_an_auth_error(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text('{"no": "keys"}')
    with pytest.raises(AuthError, match="cannot load JWKS"):
        Authenticator({ISS: str(path)}).verify(f"Bearer {token()}", AUD)


# -- issue 20: revocation, deadlines, no lock across the network, token lifetime ----------------------

def test_a_key_removed_from_the_jwks_is_refused_after_its_max_age(auth, mocked, clock):
    mocked.replace(responses.GET, JWKS_URL, json=JWKS, headers={"Cache-Control": "public, max-age=120"})
    auth.verify(f"Bearer {token()}", AUD)
    mocked.replace(responses.GET, JWKS_URL, json={"keys": [jwk(RSA_KEY, "rsa1", "RS384")]})  # ec1 revoked
    clock.now += 119
    assert auth.verify(f"Bearer {token()}", AUD)["iss"] == ISS  # within max-age: cached
    clock.now += 2
    with pytest.raises(AuthError, match="unknown kid 'ec1'"):
        auth.verify(f"Bearer {token()}", AUD)
    assert len(mocked.calls) == 2


def test_without_cache_headers_the_keys_are_fetched_again_after_five_minutes(auth, mocked, clock):
    auth.verify(f"Bearer {token()}", AUD)
    mocked.replace(responses.GET, JWKS_URL, json={"keys": []})
    clock.now += 299
    assert auth.verify(f"Bearer {token()}", AUD)
    clock.now += 2
    with pytest.raises(AuthError, match="unknown kid"):
        auth.verify(f"Bearer {token()}", AUD)


def test_a_jwks_endpoint_down_keeps_the_last_keys_for_an_hour_then_refuses(auth, mocked, clock):
    auth.verify(f"Bearer {token()}", AUD)
    mocked.replace(responses.GET, JWKS_URL, body=requests.ConnectionError("down"))
    clock.now += 300 + 3500
    assert auth.verify(f"Bearer {token()}", AUD)  # stale keys, within the grace
    clock.now += 200
    with pytest.raises(AuthError, match="could not be fetched again"):
        auth.verify(f"Bearer {token()}", AUD)


def test_a_redirect_is_not_followed(clock):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(JWKS_URL, status=302, headers={"Location": "https://evil.example/jwks.json"})
        rsps.get("https://evil.example/jwks.json", json=JWKS)
        with pytest.raises(AuthError, match="cannot load JWKS"):
            Authenticator({ISS: JWKS_URL}, clock=clock).verify(f"Bearer {token()}", AUD)
        assert [c.request.url for c in rsps.calls] == [JWKS_URL]


class SlowSession:
    """Answers the first JWKS fetch at once, then blocks every later one until released."""

    def __init__(self):
        self.release, self.calls = threading.Event(), 0

    def get(self, url, **kwargs):
        self.calls += 1
        if self.calls > 1:
            self.release.wait(30)
        response = requests.Response()
        response.status_code, response.raw = 200, io.BytesIO(json.dumps(JWKS).encode())
        return response


def in_thread(work):
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(catch(work)), daemon=True)
    thread.start()
    return thread, outcome


def catch(work):
    try:
        return work()
    except AuthError as exc:
        return exc


def test_a_forged_kid_and_a_slow_jwks_endpoint_do_not_hold_up_signed_calls(clock):
    session = SlowSession()
    auth = Authenticator({ISS: JWKS_URL}, session=session, clock=clock)
    auth.verify(f"Bearer {token()}", AUD)
    clock.now += 61
    forged = manual({"alg": "ES384", "typ": "JWT", "kid": "forged"}, claims())  # unsigned, unknown kid
    forger, forged_outcome = in_thread(lambda: auth.verify(f"Bearer {forged}", AUD))
    while session.calls < 2:
        time.sleep(0.01)
    signed, outcome = in_thread(lambda: auth.verify(f"Bearer {token()}", AUD))
    signed.join(10)
    assert outcome and outcome[0]["iss"] == ISS, "a signed call waited for the forger's JWKS fetch"
    forger.join(10)  # the forger itself waits at most the fetch deadline (2 s), then is refused
    assert isinstance(forged_outcome[0], AuthError) and session.calls == 2
    with pytest.raises(AuthError, match="unknown kid"):  # no second fetch within the interval
        auth.verify(f"Bearer {forged}", AUD)
    session.release.set()


def test_a_jwks_fetch_has_a_total_deadline_against_a_trickling_server(clock):
    """A server that sends its answer a byte at a time (each read within any per-read timeout)."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    accepted = []

    def trickle(conn):
        conn.recv(65536)
        payload = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b" " * 1000
        for byte in payload:
            if stop.wait(0.2):
                break
            conn.sendall(bytes([byte]))
        conn.close()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json"
    auth = Authenticator({ISS: url}, clock=clock)
    caller, outcome = in_thread(lambda: auth.verify(f"Bearer {token()}", AUD))
    caller.join(8)  # the old fetch, 2 s per read, would go on for minutes
    assert outcome and isinstance(outcome[0], AuthError) and "cannot load JWKS" in outcome[0].message
    clock.now += 61  # the first fetch is still trickling: given up on, a new one starts, and also ends in time
    caller, outcome = in_thread(lambda: auth.verify(f"Bearer {token()}", AUD))
    caller.join(8)
    stop.set()
    assert outcome and isinstance(outcome[0], AuthError) and len(accepted) == 2
    listener.close()


@pytest.mark.parametrize("changes", [
    {"iat": int(time.time()) - 365 * 86400, "exp": int(time.time()) + 10 * 365 * 86400},
    {"exp": int(time.time()) + 3600},
    {"iat": int(time.time()) - 7200, "exp": int(time.time()) + 60},
], ids=["a year old, ten years to go", "an hour ahead", "issued two hours ago"])
def test_a_token_living_longer_than_the_maximum_is_refused(auth, changes):
    with pytest.raises(AuthError, match="lifetime"):
        auth.verify(f"Bearer {token(**changes)}", AUD)
    assert auth.verify(f"Bearer {token(exp=int(time.time()) + 300)}", AUD)  # the usual 5 minutes
