"""A small but real OpenID Connect issuer for tests: a stdlib HTTP server, run as its own process on a loopback port.

Run `python tests/oidc_issuer.py [--config FILE.json]`: it binds 127.0.0.1 on a port the OS picks, prints
`READY http://127.0.0.1:PORT` and serves until killed. `oidc_issuer()` below starts it in a subprocess and yields a
handle; `tests/conftest.py` wraps that in the `oidc_issuer` fixture.

Endpoints (the discovery document lists the standard ones):
- `GET  /.well-known/openid-configuration`  discovery: issuer, endpoints, algorithms.
- `GET  /jwks`                               the public keys (RSA and EC P-256, each with a `kid`); old RSA keys stay
                                             listed after a rotation, as real issuers keep them for an overlap.
- `POST /token`                              `client_credentials` (client id and secret by HTTP Basic or in the form)
                                             and `authorization_code` grants; JWT access tokens, plus an `id_token`
                                             for the code flow.
- `GET  /authorize`                          the authorization-code endpoint; approves at once (no login page) and
                                             redirects to `redirect_uri` with `code` and `state`.
- `GET  /userinfo`                           the claims of the user behind a bearer access token.
- `POST /test/mint`                          test only: sign any claims, with a chosen `kid`, `alg` and extra headers.
- `POST /test/rotate`                        test only: add a new RSA key with a new `kid` and sign with it from now on.
- `POST /test/sign_in_as`                    test only: the user the authorize endpoint logs in from now on.
- `GET  /test/stats`                         test only: how often the JWKS and discovery were fetched.

`/test/mint` algorithms: `RS256` (the current RSA key, or the key `kid` names), `ES256` (the EC key), `none` (no
signature) and `HS256`, which is the algorithm-confusion attack: an HMAC keyed with the RSA public key's PEM, the
key a careless verifier would hand to HMAC. A `kid` the issuer does not know signs with the current key but names
that `kid` in the header, so a verifier sees an unknown key.
"""
import argparse, base64, contextlib, hashlib, hmac, itertools, json, secrets, subprocess, sys, threading, time, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_CONFIG = {
    "audience": "mlw-gateway",           # the `aud` of client_credentials access tokens
    "token_ttl_s": 300,
    "clients": {                          # client id -> secret, extra claims of its tokens, allowed redirect URIs
        "ci-bot": {"secret": "ci-bot-secret", "claims": {"roles": ["predictor"]}, "redirect_uris": []},
        "dashboards": {"secret": "dashboards-secret", "claims": {}, "redirect_uris": ["*"]},
    },
    "users": {                            # who the auto-approving authorize endpoint logs in (login_hint picks one)
        "alice": {"name": "Alice Analyst", "email": "alice@example.test", "preferred_username": "alice",
                  "roles": ["viewer", "deployer"]},
    },
    "default_user": "alice",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_b64(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


class Issuer:
    "The issuer's state: signing keys, clients, users, pending authorization codes and fetch counters."

    def __init__(self, url: str, config: dict):
        from joserfc.jwk import ECKey, RSAKey
        self.url, self.config, self.lock = url, config, threading.Lock()
        self._n = itertools.count(1)
        self.rsa = {}                      # kid -> RSAKey (private), in creation order
        self.current = self._new_rsa()
        self.ec_kid = "ec-1"
        self.ec = ECKey.generate_key("P-256", parameters={"kid": self.ec_kid}, private=True)
        self.codes = {}                    # code -> (client_id, redirect_uri, user, nonce)
        self.stats = {"jwks": 0, "discovery": 0, "token": 0, "authorize": 0, "userinfo": 0}
        self._RSAKey = RSAKey

    def _new_rsa(self) -> str:
        from joserfc.jwk import RSAKey
        kid = f"rsa-{next(self._n)}"
        self.rsa[kid] = RSAKey.generate_key(2048, parameters={"kid": kid}, private=True)
        return kid

    def rotate(self) -> str:
        with self.lock:
            self.current = self._new_rsa()
            return self.current

    def discovery(self) -> dict:
        u = self.url
        return {"issuer": u, "authorization_endpoint": f"{u}/authorize", "token_endpoint": f"{u}/token",
                "userinfo_endpoint": f"{u}/userinfo", "jwks_uri": f"{u}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "grant_types_supported": ["authorization_code", "client_credentials"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "profile", "email"],
                "claims_supported": ["sub", "name", "email", "preferred_username", "roles"]}

    def jwks(self) -> dict:
        with self.lock:
            keys = [k.as_dict(private=False) for k in self.rsa.values()] + [self.ec.as_dict(private=False)]
        for k in keys: k.update(use="sig")
        return {"keys": keys}

    def mint(self, claims: dict, kid: str | None = None, alg: str = "RS256", headers: dict | None = None) -> str:
        "Sign `claims` exactly as given (see the module docstring for `alg` and `kid`)."
        from joserfc import jws
        from joserfc.jws import JWSRegistry
        with self.lock:
            rsa_kid = self.current
        payload = json.dumps(claims, separators=(",", ":")).encode()
        if alg == "none":
            header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {}), **(headers or {})}
            return f"{_json_b64(header)}.{b64url(payload)}."
        if alg == "HS256":                 # algorithm confusion: HMAC keyed with the RSA public key as PEM
            pem = self.rsa[kid if kid in self.rsa else rsa_kid].as_pem(private=False)
            header = {"alg": "HS256", "typ": "JWT", "kid": kid or rsa_kid, **(headers or {})}
            signing_input = f"{_json_b64(header)}.{b64url(payload)}"
            sig = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{b64url(sig)}"
        if alg.startswith("ES"):
            key, header_kid = self.ec, kid or self.ec_kid
        elif alg.startswith(("RS", "PS")):
            key, header_kid = self.rsa.get(kid) or self.rsa[rsa_kid], kid or rsa_kid
        else:
            raise ValueError(f"mint: alg {alg!r} is not one this issuer signs (RS256, ES256, HS256, none)")
        header = {"alg": alg, "typ": "JWT", "kid": header_kid, **(headers or {})}
        return jws.serialize_compact(header, payload, key, registry=JWSRegistry(algorithms=[alg], strict_check_header=False))

    def standard_claims(self, sub: str, aud: str, **extra) -> dict:
        now = int(time.time())
        return {"iss": self.url, "sub": sub, "aud": aud, "iat": now, "nbf": now,
                "exp": now + int(self.config["token_ttl_s"]), "jti": secrets.token_hex(8), **extra}

    def client(self, form: dict, auth_header: str | None) -> str | None:
        "The client id whose credentials came with a token request, or None."
        cid, secret = form.get("client_id"), form.get("client_secret")
        if auth_header and auth_header.startswith("Basic "):
            try:
                cid, _, secret = base64.b64decode(auth_header[6:]).decode().partition(":")
                cid, secret = urllib.parse.unquote(cid), urllib.parse.unquote(secret)
            except Exception:
                return None
        c = self.config["clients"].get(cid or "")
        return cid if c and secret and hmac.compare_digest(c["secret"], secret) else None


class Handler(BaseHTTPRequestHandler):
    issuer: Issuer = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status: int, body=None, headers: dict | None = None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _form(self) -> dict:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(self._body().decode()).items()}

    def do_GET(self):
        iss, url = self.issuer, urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            iss.stats["discovery"] += 1
            return self._send(200, iss.discovery())
        if url.path == "/jwks":
            iss.stats["jwks"] += 1
            return self._send(200, iss.jwks())
        if url.path == "/test/stats":
            return self._send(200, iss.stats)
        if url.path == "/authorize":
            iss.stats["authorize"] += 1
            client = iss.config["clients"].get(q.get("client_id", ""))
            redirect = q.get("redirect_uri", "")
            if not client:
                return self._send(400, {"error": "invalid_client", "error_description": f"unknown client_id {q.get('client_id')!r}"})
            if q.get("response_type") != "code":
                return self._send(400, {"error": "unsupported_response_type"})
            allowed = client.get("redirect_uris", [])
            if not redirect or ("*" not in allowed and redirect not in allowed):
                return self._send(400, {"error": "invalid_request", "error_description": f"redirect_uri {redirect!r} not registered"})
            user = q.get("login_hint") or iss.config["default_user"]
            if user not in iss.config["users"]:
                return self._send(400, {"error": "access_denied", "error_description": f"unknown user {user!r}"})
            code = secrets.token_urlsafe(16)
            iss.codes[code] = (q["client_id"], redirect, user, q.get("nonce"))
            params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
            sep = "&" if "?" in redirect else "?"
            return self._send(302, None, {"Location": f"{redirect}{sep}{urllib.parse.urlencode(params)}"})
        if url.path == "/userinfo":
            iss.stats["userinfo"] += 1
            auth = self.headers.get("Authorization", "")
            claims = self._check_access_token(auth[7:] if auth.startswith("Bearer ") else "")
            if claims is None:
                return self._send(401, {"error": "invalid_token"}, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            user = iss.config["users"].get(claims["sub"], {})
            return self._send(200, {"sub": claims["sub"], **user})
        return self._send(404, {"error": "not_found", "path": url.path})

    def _check_access_token(self, token: str) -> dict | None:
        from joserfc import jws
        from joserfc.jwk import KeySet
        try:
            obj = jws.deserialize_compact(token, KeySet.import_key_set(self.issuer.jwks()), algorithms=["RS256", "ES256"])
            claims = json.loads(obj.payload)
            return claims if claims.get("exp", 0) > time.time() else None
        except Exception:
            return None

    def do_POST(self):
        iss, path = self.issuer, urllib.parse.urlsplit(self.path).path
        if path == "/test/mint":
            req = json.loads(self._body() or b"{}")
            try:
                token = iss.mint(req.get("claims", {}), kid=req.get("kid"), alg=req.get("alg", "RS256"), headers=req.get("headers"))
            except ValueError as e:
                return self._send(400, {"error": str(e)})
            return self._send(200, {"token": token})
        if path == "/test/rotate":
            return self._send(200, {"kid": iss.rotate()})
        if path == "/test/sign_in_as":  # who the authorize endpoint logs in from now on, as a person choosing an account there
            user = json.loads(self._body() or b"{}").get("user")
            if user not in iss.config["users"]:
                return self._send(400, {"error": f"unknown user {user!r}"})
            with iss.lock:
                iss.config["default_user"] = user
            return self._send(200, {"user": user})
        if path == "/token":
            iss.stats["token"] += 1
            form = self._form()
            cid = iss.client(form, self.headers.get("Authorization"))
            if cid is None:
                return self._send(401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="oidc-issuer"'})
            client, ttl = iss.config["clients"][cid], int(iss.config["token_ttl_s"])
            grant = form.get("grant_type")
            if grant == "client_credentials":
                claims = iss.standard_claims(cid, client.get("audience", iss.config["audience"]), client_id=cid, **client.get("claims", {}))
                if form.get("scope"): claims["scope"] = form["scope"]
                return self._send(200, {"access_token": iss.mint(claims), "token_type": "Bearer", "expires_in": ttl})
            if grant == "authorization_code":
                entry = iss.codes.pop(form.get("code", ""), None)
                if entry is None or entry[0] != cid or entry[1] != form.get("redirect_uri", entry[1]):
                    return self._send(400, {"error": "invalid_grant"})
                _, _, user, nonce = entry
                claims = iss.config["users"][user]
                access = iss.mint(iss.standard_claims(user, client.get("audience", iss.config["audience"]), client_id=cid, **claims))
                id_claims = iss.standard_claims(user, cid, azp=cid, **claims, **({"nonce": nonce} if nonce else {}))
                return self._send(200, {"access_token": access, "id_token": iss.mint(id_claims), "token_type": "Bearer",
                                        "expires_in": ttl, "scope": "openid profile email"})
            return self._send(400, {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"})
        return self._send(404, {"error": "not_found", "path": path})


def serve(config: dict, host: str = "127.0.0.1", port: int = 0):
    "Serve an issuer until killed; print `READY <url>` once listening."
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    url = f"http://{host}:{server.server_port}"
    Handler.issuer = Issuer(url, config)
    print(f"READY {url}", flush=True)
    server.serve_forever()


class IssuerHandle:
    "What `oidc_issuer()` yields: the issuer's `url`, `mint`, `rotate`, `token`, `claims` and `stats`, all over HTTP."

    def __init__(self, url: str, config: dict, proc: subprocess.Popen):
        self.url, self.config, self.proc = url, config, proc
        self.audience = config["audience"]

    def _post(self, path: str, body: dict | None = None, form: dict | None = None, auth: tuple | None = None) -> dict:
        data = json.dumps(body or {}).encode() if form is None else urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json" if form is None else "application/x-www-form-urlencoded"})
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def mint(self, claims: dict, kid: str | None = None, alg: str = "RS256", headers: dict | None = None) -> str:
        "A token with exactly these claims, signed by the issuer (see the module docstring for `alg` and `kid`)."
        return self._post("/test/mint", {"claims": claims, "kid": kid, "alg": alg, "headers": headers})["token"]

    def rotate(self) -> str:
        "Add a new signing key; the issuer signs with it from now on. Returns its kid."
        return self._post("/test/rotate")["kid"]

    def sign_in_as(self, user: str) -> None:
        "Make the authorize endpoint log in `user` (one of the config's `users`) when a request names none (`login_hint`)."
        self._post("/test/sign_in_as", {"user": user})

    def token(self, client_id: str, client_secret: str, scope: str | None = None) -> str:
        "An access token from the token endpoint's client_credentials grant."
        return self._post("/token", form={"grant_type": "client_credentials", **({"scope": scope} if scope else {})},
                          auth=(client_id, client_secret))["access_token"]

    def claims(self, sub: str = "alice", aud: str | None = None, ttl_s: int = 300, **extra) -> dict:
        "A valid claim set from this issuer (iss, sub, aud, iat, nbf, exp) plus `extra`; a test edits it to break it."
        now = int(time.time())
        return {"iss": self.url, "sub": sub, "aud": aud or self.audience, "iat": now, "nbf": now, "exp": now + ttl_s, **extra}

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/test/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        "Stop the issuer process (a test of an issuer that went away)."
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill(); self.proc.wait()


@contextlib.contextmanager
def oidc_issuer(config: dict | None = None, timeout_s: float = 30):
    "Start the issuer in a subprocess (this file, the current Python) on a free loopback port; yield an `IssuerHandle`."
    import tempfile
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="mlw-oidc-", delete=False) as f:
        json.dump(cfg, f)
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--config", f.name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    handle = None
    try:
        # Read the READY line on a thread so a silent, stuck start fails after timeout_s instead of hanging.
        line: list = []
        t = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        t.start(); t.join(timeout_s)
        if not line or not line[0].startswith("READY "):
            proc.kill()
            raise RuntimeError(f"oidc_issuer: the issuer did not start within {timeout_s} s: {proc.stderr.read()[-3000:]}")
        handle = IssuerHandle(line[0].split()[1], cfg, proc)
        yield handle
    finally:
        if handle: handle.stop()
        elif proc.poll() is None: proc.kill(); proc.wait()
        Path(f.name).unlink(missing_ok=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="JSON file with audience, token_ttl_s, clients, users, default_user")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    cfg = {**DEFAULT_CONFIG, **(json.loads(Path(args.config).read_text()) if args.config else {})}
    serve(cfg, port=args.port)
