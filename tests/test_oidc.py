"""OIDCVerifier against a real OIDC issuer over HTTP (tests/oidc_issuer.py in its own process): valid, forged,
expired, not-yet-valid, wrong audience and issuer, alg=none, HS256 keyed with the public key, unknown kid, rotation,
two role-claim shapes, the authorization-code flow, an issuer that is down or silent, and a Panel page logging in through it."""
import base64, hashlib, hmac, json, secrets, socket, threading, time, urllib.error, urllib.parse, urllib.request

import pytest

from mlops_workbench.core.errors import InvalidInput, Unauthorized, Unavailable
from mlops_workbench.security.oidc import OIDCVerifier


def verifier(iss, **kw):
    return OIDCVerifier(iss.url, iss.audience, **kw)


def rejected(v, token) -> Unauthorized:
    "The Unauthorized that verifying `token` raises (failing the test if it verifies)."
    with pytest.raises(Unauthorized) as e:
        v.verify(token)
    assert e.value.http_status == 401
    return e.value


def test_client_credentials_token_becomes_a_principal(oidc_issuer):
    v = verifier(oidc_issuer)
    p = v.verify(oidc_issuer.token("ci-bot", "ci-bot-secret"))   # the issuer's real token endpoint
    assert (p.name, p.roles, p.via) == ("ci-bot", frozenset({"predictor"}), "oidc")
    assert p.claims["iss"] == oidc_issuer.url and p.claims["client_id"] == "ci-bot"
    # roles: known names kept, unknown dropped; an ES256 token (the issuer's EC key) verifies too
    p = v.verify(oidc_issuer.mint(oidc_issuer.claims(sub="bob", roles=["deployer", "root", "viewer"]), alg="ES256"))
    assert (p.name, p.roles) == ("bob", frozenset({"deployer", "viewer"}))
    assert v.verify(oidc_issuer.mint(oidc_issuer.claims(sub="nobody"))).roles == frozenset()
    # a token client with a wrong secret gets nothing from the issuer
    with pytest.raises(urllib.error.HTTPError) as e:
        oidc_issuer.token("ci-bot", "wrong")
    assert e.value.code == 401


def test_roles_from_a_nested_claim_and_from_scope(oidc_issuer):
    # Keycloak's shape: realm_access.roles, names of the issuer's own mapped through role_map
    kc = verifier(oidc_issuer, roles_claim="realm_access.roles", role_map={"ml-admins": "admin", "ml-users": ["viewer", "predictor"]})
    token = oidc_issuer.mint(oidc_issuer.claims(sub="carol", realm_access={"roles": ["ml-users", "offline_access", "admin"]}))
    assert kc.verify(token).roles == frozenset({"viewer", "predictor"})  # 'admin' is not in role_map: the issuer's admin is not ours
    # An OAuth scope string, from the token endpoint's scope parameter
    sc = verifier(oidc_issuer, roles_claim="scope", role_map={"mlw:predict": "predictor", "mlw:deploy": "deployer"})
    p = sc.verify(oidc_issuer.token("ci-bot", "ci-bot-secret", scope="openid mlw:predict"))
    assert (p.name, p.roles) == ("ci-bot", frozenset({"predictor"}))
    # a principal named by another claim
    pn = verifier(oidc_issuer, name_claim="preferred_username")
    assert pn.verify(oidc_issuer.mint(oidc_issuer.claims(sub="f81d4fae", preferred_username="carol"))).name == "carol"
    assert rejected(pn, oidc_issuer.mint(oidc_issuer.claims(sub="f81d4fae"))).reason == "missing_claim"


def test_forged_token_signed_by_another_key_with_the_same_kid(oidc_issuer):
    from joserfc import jwt
    from joserfc.jwk import RSAKey
    v = verifier(oidc_issuer)
    kid = v.discover() and next(k for k in v._keys if k.startswith("rsa-"))
    impostor = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": kid}, oidc_issuer.claims(sub="mallory", roles=["admin"]), impostor)
    e = rejected(v, forged)
    assert e.reason == "signature" and kid in str(e)
    # a genuine token whose payload was swapped keeps a signature over the old payload
    h, _, sig = oidc_issuer.mint(oidc_issuer.claims(roles=["viewer"])).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(oidc_issuer.claims(roles=["admin"])).encode()).rstrip(b"=").decode()
    assert rejected(v, f"{h}.{payload}.{sig}").reason == "signature"


def test_time_claims_with_leeway(oidc_issuer):
    v, now = verifier(oidc_issuer, leeway_s=30), int(time.time())
    c = oidc_issuer.claims
    e = rejected(v, oidc_issuer.mint(c(exp=now - 120)))
    assert e.reason == "expired" and "get a new token" in str(e)
    assert rejected(v, oidc_issuer.mint(c(nbf=now + 600))).reason == "not_yet_valid"
    assert rejected(v, oidc_issuer.mint(c(iat=now + 600))).reason == "not_yet_valid"
    # within the leeway both ways: a clock a little behind or ahead is not the caller's fault
    assert v.verify(oidc_issuer.mint(c(exp=now - 10))).name == "alice"
    assert v.verify(oidc_issuer.mint(c(nbf=now + 10, iat=now + 10))).name == "alice"
    assert rejected(v, oidc_issuer.mint(c(exp="tomorrow"))).reason == "malformed"


def test_wrong_audience_issuer_and_missing_claims(oidc_issuer):
    v, c = verifier(oidc_issuer), oidc_issuer.claims
    e = rejected(v, oidc_issuer.mint(c(aud="some-other-api")))
    assert e.reason == "audience" and "mlw-gateway" in str(e)
    assert v.verify(oidc_issuer.mint(c(aud=["some-other-api", "mlw-gateway"]))).name == "alice"  # aud as a list
    assert rejected(v, oidc_issuer.mint(c(iss="http://127.0.0.1:1/evil"))).reason == "issuer"
    for claim in ("exp", "aud", "iss", "sub"):
        claims = c(); del claims[claim]
        e = rejected(v, oidc_issuer.mint(claims))
        assert e.reason == "missing_claim" and repr(claim) in str(e)
    for junk in ("", "abc", "a.b", "a.b.c.d", "!!!.e30.x", None, 42):
        assert rejected(v, junk).reason == "malformed"


def test_alg_none_and_hs256_keyed_with_the_public_key(oidc_issuer):
    v = verifier(oidc_issuer)
    none = oidc_issuer.mint(oidc_issuer.claims(roles=["admin"]), alg="none")
    assert none.endswith(".")
    e = rejected(v, none)
    assert e.reason == "algorithm" and "unsigned" in str(e)
    # The confusion token is a real attack: its HMAC, keyed with the issuer's public key as PEM (from the public
    # JWKS), checks out, so a verifier that handed "the key" to whatever alg the header names would accept it.
    confused = oidc_issuer.mint(oidc_issuer.claims(roles=["admin"]), alg="HS256")
    from joserfc.jwk import import_key
    jwks = json.loads(urllib.request.urlopen(oidc_issuer.url + "/jwks", timeout=10).read())
    kid = json.loads(base64.urlsafe_b64decode(confused.split(".")[0] + "=="))["kid"]
    pem = import_key(next(k for k in jwks["keys"] if k["kid"] == kid)).as_pem(private=False)
    signing_input, sig = confused.rsplit(".", 1)
    assert base64.urlsafe_b64encode(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()).rstrip(b"=").decode() == sig
    e = rejected(v, confused)
    assert e.reason == "algorithm" and "HS256" in str(e)
    # An allowed alg that does not fit the key the kid names is refused too (RS256 header naming the EC key)
    assert rejected(v, oidc_issuer.mint(oidc_issuer.claims(), alg="RS256", headers={"kid": "ec-1"})).reason == "algorithm"
    # ... and HS*/none cannot be configured in the first place
    with pytest.raises(InvalidInput):
        OIDCVerifier(oidc_issuer.url, "mlw-gateway", algorithms=("RS256", "HS256"))


def test_unknown_kid_refreshes_once_then_rejects(oidc_issuer):
    v = verifier(oidc_issuer, jwks_min_refresh_s=60)
    v.discover()
    v._jwks_at -= 60  # the keys were fetched a minute ago: one refresh is allowed
    before = oidc_issuer.stats()["jwks"]
    e = rejected(v, oidc_issuer.mint(oidc_issuer.claims(), kid="no-such-key"))
    assert e.reason == "unknown_kid" and "no-such-key" in str(e)
    assert oidc_issuer.stats()["jwks"] == before + 1            # one refresh ...
    for i in range(5):                                          # ... and no more within jwks_min_refresh_s
        assert rejected(v, oidc_issuer.mint(oidc_issuer.claims(), kid=f"made-up-{i}")).reason == "unknown_kid"
    assert oidc_issuer.stats()["jwks"] == before + 1


def test_unknown_kid_from_many_threads_at_once_fetches_once(oidc_issuer):
    v = verifier(oidc_issuer, jwks_min_refresh_s=60)
    v.discover()
    v._jwks_at -= 60
    new_kid = oidc_issuer.rotate()
    token, before = oidc_issuer.mint(oidc_issuer.claims(sub="burst")), oidc_issuer.stats()["jwks"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(v.verify(token).name)) for _ in range(16)]
    for t in threads: t.start()
    for t in threads: t.join(30)
    assert results == ["burst"] * 16 and new_kid in v._keys
    assert oidc_issuer.stats()["jwks"] == before + 1


def test_key_rotation(oidc_issuer):
    v = verifier(oidc_issuer, jwks_min_refresh_s=0)
    old = oidc_issuer.mint(oidc_issuer.claims(sub="before"))
    assert v.verify(old).name == "before"
    fetches = oidc_issuer.stats()["jwks"]
    new_kid = oidc_issuer.rotate()
    new = oidc_issuer.mint(oidc_issuer.claims(sub="after"))
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == new_kid
    assert v.verify(new).name == "after"                  # unknown kid -> one JWKS refresh -> verifies
    assert oidc_issuer.stats()["jwks"] == fetches + 1
    assert v.verify(old).name == "before"                 # the old key is still published: its tokens still verify
    assert v.verify(new).name == "after" and oidc_issuer.stats()["jwks"] == fetches + 1  # cached now


def test_authorization_code_flow_id_token(oidc_issuer):
    "The browser-login path, in plain HTTP: authorize (auto-approved) -> code -> token endpoint -> id_token for the client."
    redirect = "http://127.0.0.1:9/callback"
    q = urllib.parse.urlencode({"response_type": "code", "client_id": "dashboards", "redirect_uri": redirect,
                                "state": "xyz", "nonce": "n-1", "scope": "openid profile"})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k): return None
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(NoRedirect).open(f"{oidc_issuer.url}/authorize?{q}", timeout=10)
    assert e.value.code == 302
    loc = urllib.parse.urlsplit(e.value.headers["Location"])
    params = dict(urllib.parse.parse_qsl(loc.query))
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == redirect and params["state"] == "xyz"
    tokens = oidc_issuer._post("/token", form={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect},
                               auth=("dashboards", "dashboards-secret"))
    p = OIDCVerifier(oidc_issuer.url, "dashboards").verify(tokens["id_token"])  # an id_token's aud is the client id
    assert (p.name, p.roles, p.claims["nonce"], p.claims["email"]) == ("alice", frozenset({"viewer", "deployer"}), "n-1", "alice@example.test")
    assert verifier(oidc_issuer).verify(tokens["access_token"]).name == "alice"
    with pytest.raises(urllib.error.HTTPError) as e:  # a code is good once
        oidc_issuer._post("/token", form={"grant_type": "authorization_code", "code": params["code"], "redirect_uri": redirect},
                          auth=("dashboards", "dashboards-secret"))
    assert e.value.code == 400


def test_issuer_down_or_silent_is_a_503_naming_the_url(oidc_issuer):
    # Keys cached before the issuer went away keep working; what needs the issuer is a 503, not a 401
    v = verifier(oidc_issuer)
    token = oidc_issuer.mint(oidc_issuer.claims(sub="cached"))
    assert v.verify(token).name == "cached"
    unknown = oidc_issuer.mint(oidc_issuer.claims(), kid="after-rotation")
    oidc_issuer.stop()
    assert v.verify(token).name == "cached"
    v._jwks_at -= 60
    with pytest.raises(Unavailable) as e:
        v.verify(unknown)
    assert e.value.http_status == 503 and f"{oidc_issuer.url}/jwks" in str(e.value) and "cannot connect" in str(e.value)
    # Never discovered, issuer down: the first request says so
    with pytest.raises(Unavailable) as e:
        verifier(oidc_issuer).verify(token)
    assert f"{oidc_issuer.url}/.well-known/openid-configuration" in str(e.value)
    # An issuer that accepts the connection and never answers: a 503 after http_timeout_s, not a hang
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0)); silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(Unavailable) as e:
            OIDCVerifier(url, "mlw-gateway", http_timeout_s=0.5).verify(token)
    assert "no answer within 0.5 s" in str(e.value) and url in str(e.value)


def test_discovery_must_name_the_configured_issuer_exactly(oidc_issuer):
    with pytest.raises(Unavailable) as e:
        OIDCVerifier(oidc_issuer.url + "/", "mlw-gateway").discover()
    assert "must match it exactly" in str(e.value) and repr(oidc_issuer.url) in str(e.value)


PANEL_APP = r'''
import json, sys
import panel as pn
opts, port = json.loads(sys.argv[1]), int(sys.argv[2])
pn.serve({"app": lambda: pn.pane.Markdown(f"signed in as {pn.state.user}")}, port=port, address="127.0.0.1", show=False,
         websocket_origin=[f"127.0.0.1:{port}"], **opts)
'''


def test_panel_dashboards_log_in_through_the_issuer(oidc_issuer):
    "A Panel page served with panel_oauth_options: an anonymous visit goes to the issuer's authorize endpoint, the code flow lands back signed in."
    import subprocess, sys
    import httpx
    from tornado.web import decode_signed_value
    from conftest import free_port
    from mlops_workbench.security.oidc import panel_oauth_options
    port, cookie_secret = free_port(), secrets.token_urlsafe(32)
    base = f"http://127.0.0.1:{port}"
    opts = panel_oauth_options(oidc_issuer.url, "dashboards", "dashboards-secret", redirect_uri=f"{base}/login", cookie_secret=cookie_secret)
    proc = subprocess.Popen([sys.executable, "-c", PANEL_APP, json.dumps(opts), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Panel server exited with {proc.returncode}: {proc.stderr.read()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close(); break
            except OSError:
                if time.monotonic() > deadline: pytest.fail("the Panel server did not listen within 60 s")
                time.sleep(0.1)
        with httpx.Client(follow_redirects=False, timeout=20) as anon:  # no cookies: sent to log in, then to the issuer
            r = anon.get(f"{base}/app")
            assert r.status_code == 302 and "login" in r.headers["location"]
            r = anon.get(httpx.URL(f"{base}/app").join(r.headers["location"]))
            assert r.status_code == 302 and r.headers["location"].startswith(f"{oidc_issuer.url}/authorize?")
            q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(r.headers["location"]).query))
            assert (q["client_id"], q["response_type"], q["redirect_uri"]) == ("dashboards", "code", f"{base}/login")
        with httpx.Client(follow_redirects=True, timeout=20) as browser:  # the whole dance, as a browser follows it
            r = browser.get(f"{base}/app")
            hops = [str(h.url) for h in r.history]
            assert any(h.startswith(f"{oidc_issuer.url}/authorize?") for h in hops) and any("/login?code=" in h for h in hops)
            assert r.status_code == 200 and r.url == f"{base}/app"
            user = decode_signed_value(cookie_secret, "user", browser.cookies["user"].strip('"'))  # tornado quotes it (it holds '|')
            assert user == b"alice"                                     # preferred_username from the issuer's id_token
            again = browser.get(f"{base}/app", follow_redirects=False)  # signed in now: no detour
            assert again.status_code == 200
        stats = oidc_issuer.stats()
        assert stats["authorize"] == 1 and stats["token"] == 1      # one login: one code, exchanged once
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()


def test_mlw_dashboards_oauth_logs_in_through_the_issuer(oidc_issuer, tmp_path):
    "`mlw dashboards --oauth ISSUER`: the client secret comes from the workspace's secrets; a browser is sent to log in and lands back on the page."
    import subprocess, sys
    from pathlib import Path
    import httpx
    from conftest import free_port
    mlw = str(Path(sys.executable).with_name("mlw"))
    ws = str(tmp_path / "ws")
    assert subprocess.run([mlw, "init", ws], capture_output=True).returncode == 0
    put = subprocess.run([mlw, "secrets", "set", "dashboards.oauth_client_secret", "--workspace", ws], input="dashboards-secret", capture_output=True, text=True)
    assert put.returncode == 0, put.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([mlw, "dashboards", "--oauth", oidc_issuer.url, "--oauth_client_id", "dashboards", "--port", str(port), "--workspace", ws],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None: pytest.fail(f"mlw dashboards exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
            try: socket.create_connection(("127.0.0.1", port), 0.5).close(); break
            except OSError:
                if time.monotonic() > deadline: pytest.fail("mlw dashboards did not listen within 90 s")
                time.sleep(0.2)
        with httpx.Client(follow_redirects=False, timeout=30) as anon:
            r = anon.get(f"{base}/pipelines")
            assert r.status_code == 302 and "login" in r.headers["location"]
        with httpx.Client(follow_redirects=True, timeout=60) as browser:
            r = browser.get(f"{base}/pipelines")
            assert any(str(h.url).startswith(f"{oidc_issuer.url}/authorize?") for h in r.history)
            assert r.status_code == 200 and r.url == f"{base}/pipelines"
        assert oidc_issuer.stats()["token"] == 1
    finally:
        proc.terminate()
        try: out = proc.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired: proc.kill(); out = proc.communicate()[0]
    assert "dashboards-secret" not in out  # the client secret is never printed


def test_a_token_whose_subject_is_empty_is_401_not_400(oidc_issuer):
    from mlops_workbench.core.errors import Unauthorized
    from mlops_workbench.security.oidc import OIDCVerifier
    v = OIDCVerifier(oidc_issuer.url, oidc_issuer.audience)
    with pytest.raises(Unauthorized) as e: v.verify(oidc_issuer.mint(oidc_issuer.claims(sub="")))
    assert e.value.reason == "missing_claim"
