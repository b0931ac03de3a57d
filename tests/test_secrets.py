"""Secrets: encrypted at rest, never in logs, reprs, errors, listings or the audit log; rotation across processes with the
key in the environment; the workspace's own key file made 0600 (once, even by processes racing); SQLite and PostgreSQL.

The values below are distinctive strings, so "not in X" means the bytes do not occur anywhere in X.
"""
import copy
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.metadata import audit_log, secrets as secrets_table
from mlops_workbench.core.workspace import SECRET_KEY_FILE, Workspace
from mlops_workbench.security.secrets import (MASK, Secret, SecretKeyMismatch, SecretsFilter, delete_secret, get_secret,
                                              list_secrets, new_secret_key, put_secret, redact, rotate_secret_key)

VALUES = {
    "smtp_password": "Sm7p-pa55w0rd-9f3c2a77",
    "alerts.webhook_token": "xoxb-1234-5678-AbCdEfGhIjKlMnOpQr",
    "db.password": "pg:S3cr3t/with'quote\"and-ünïcode",
    "ci.signing_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----",
}


def _leaks(text: str, *extra: str) -> list:
    "The secret values (also escaped, and line by line) and `extra` strings (keys) found in `text`."
    forms = lambda v: (v, repr(v)[1:-1], json.dumps(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1],
                       *[l for l in v.splitlines() if "-----" not in l])  # as written, by repr and by JSON, line by line
    needles = [f for v in VALUES.values() for f in forms(v)] + list(extra)
    return [n for n in needles if n in text]


def _digest(v: str) -> str: return hashlib.sha256(v.encode()).hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
def sws(request, tmp_path, monkeypatch):
    "A workspace with its own key file, its metadata on SQLite or on a real PostgreSQL server."
    monkeypatch.delenv("MLW_HOME", raising=False)
    backends = {"metadata": request.getfixturevalue("pg_new_database")()} if request.param == "postgresql" else {}
    ws = Workspace.init(tmp_path/"ws", backends=backends, env={})
    yield ws
    ws.close()


@pytest.fixture
def lws(tmp_path, monkeypatch):
    "A workspace on SQLite with its own key file."
    monkeypatch.delenv("MLW_HOME", raising=False)
    ws = Workspace.init(tmp_path/"ws", env={})
    yield ws
    ws.close()


def _put_all(ws):
    for name, value in VALUES.items(): put_secret(ws, name, value, who="ops")


def test_values_are_encrypted_at_rest_and_read_back(sws):
    _put_all(sws)
    test_version = put_secret(sws, "smtp_password", VALUES["smtp_password"], who="ops")
    assert test_version == 2
    for name, value in VALUES.items(): assert get_secret(sws, name).reveal() == value
    # every byte the workspace folder holds: the SQLite file, its WAL and shared memory, the key file, the settings
    files = [p for p in sws.root.rglob("*") if p.is_file()]
    if sws.metadata.engine.dialect.name == "sqlite":
        names = {p.name for p in files}
        assert {"metadata.db", "metadata.db-wal"} <= names, names  # the WAL is there, and grepped
    for p in files:
        data = p.read_bytes()
        for v in VALUES.values():
            for needle in (v, *v.splitlines()[1:2]):
                assert needle.encode() not in data, f"{needle[:6]}... found in {p.name}"
    # what the database server gives back for the table, row by row, as text
    with sws.metadata.begin() as c:
        rows = c.execute(sa.select(secrets_table)).all()
    assert len(rows) == len(VALUES) and all(r.token.startswith("gAAAA") for r in rows)
    assert not _leaks(repr(rows))


def test_values_are_not_in_reprs_listings_or_errors(lws):
    _put_all(lws)
    s = get_secret(lws, "smtp_password")
    shown = [repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, "{:>50}".format(s), s._repr_html_(), str([s]), str({"k": s})]
    assert not _leaks("\n".join(shown))
    assert str(s) == f"Secret('smtp_password', v1, {MASK})"
    for refuse in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled") as e: refuse(s)
        assert not _leaks(str(e.value))
    df = list_secrets(lws)
    assert df.columns == ["name", "version", "updated_at", "updated_by"]
    assert sorted(df["name"]) == sorted(VALUES)
    assert not _leaks(str(df) + json.dumps(df.to_dicts(), default=str) + df.write_csv())

    key = lws.secret_keys()[0]
    other = new_secret_key()
    wrong = Workspace.open(lws.root, env={"MLW_SECRET_KEY": other})
    errors = []
    for bad in (lambda: get_secret(lws, "smtp_pasword"),
                lambda: get_secret(wrong, "smtp_password"),
                lambda: put_secret(wrong, "new_one", "Another-V4lue-xyz"),
                lambda: rotate_secret_key(wrong, other),
                lambda: rotate_secret_key(Workspace.open(lws.root, env={"MLW_SECRET_KEY": key}), other),
                lambda: Workspace.open(lws.root, env={"MLW_SECRET_KEY": f"{key},not-{key}"}).secret_keys(),
                lambda: put_secret(lws, "bad name", VALUES["smtp_password"])):
        with pytest.raises((NotFound, SecretKeyMismatch, Conflict, InvalidInput)) as e: bad()
        errors.append(f"{type(e.value).__name__}: {e.value}")
    text = "\n".join(errors)
    assert not _leaks(text, key, other), text
    assert "secret 'smtp_pasword' does not exist; secrets: alerts.webhook_token, ci.signing_key, db.password, smtp_password" in text
    assert "SecretKeyMismatch: secret 'smtp_password' v1 cannot be decrypted with the key(s) from MLW_SECRET_KEY" in text
    assert "refusing to write secret 'new_one'" in text
    assert "cannot rotate: secret" in text and "no secret was changed" in text
    assert "add the new key there, first" in text
    assert "key 2 of 2 is not a Fernet key" in text
    assert [r for r in list_secrets(lws)["name"]] == sorted(VALUES)  # the refused write left nothing behind
    assert SecretKeyMismatch.http_status == 500


def test_values_are_masked_in_logs(lws, caplog):
    _put_all(lws)
    s, pem = get_secret(lws, "smtp_password"), get_secret(lws, "ci.signing_key").reveal()
    caplog.handler.addFilter(SecretsFilter())
    log = logging.getLogger("mlw.test.secrets")
    with caplog.at_level(logging.INFO, logger="mlw.test.secrets"):
        log.info("connecting to smtp with %s", s.reveal())
        log.info(f"webhook {get_secret(lws, 'alerts.webhook_token').reveal()} returned 403")
        log.info("settings: %r", {"password": VALUES["db.password"]})
        log.warning("signing with key line %s", pem.splitlines()[1])
        try: raise ConnectionError(f"login refused for password {s.reveal()}")
        except ConnectionError: log.exception("delivery failed")
        log.info("done")
    text = caplog.text
    assert not _leaks(text), text
    assert text.count(MASK) >= 5 and "login refused for password ******" in text and "done" in text
    assert not _leaks(" ".join(r.getMessage() for r in caplog.records))
    assert redact(f"x{s.reveal()}y") == f"x{MASK}y"


def test_audit_log_records_changes_without_values(sws):
    _put_all(sws)
    put_secret(sws, "smtp_password", "Sm7p-pa55w0rd-rotated-2", who="ops")
    delete_secret(sws, "db.password", who="ops")
    new = new_secret_key()
    assert rotate_secret_key(sws, new, who="ops") == len(VALUES) - 1
    with sws.metadata.begin() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.select(audit_log).order_by(audit_log.c.id))]
    seen = [(r["principal"], r["action"], r["resource"]) for r in rows]
    assert ("ops", "secret.set", "secret:smtp_password") in seen
    assert ("ops", "secret.delete", "secret:db.password") in seen
    assert ("ops", "secret.rotate_key", "secret:*") in seen
    assert [r["detail"] for r in rows if r["action"] == "secret.set" and r["resource"] == "secret:smtp_password"] == [{"version": 1}, {"version": 2}]
    assert not _leaks(json.dumps(rows, default=str), "Sm7p-pa55w0rd-rotated-2", new, *sws.secret_keys())
    from mlops_workbench.security.audit import verify_audit
    assert verify_audit(sws)


ROTATE = textwrap.dedent("""
    import json, os, sys, hashlib
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.security.secrets import get_secret, list_secrets, rotate_secret_key
    ws = Workspace.open(sys.argv[1])
    if sys.argv[2] == "rotate":
        print(rotate_secret_key(ws, os.environ["MLW_SECRET_KEY"].split(",")[0], who="ops"))
    else:
        print(json.dumps({n: hashlib.sha256(get_secret(ws, n).reveal().encode()).hexdigest() for n in list_secrets(ws)["name"]}))
""")


def _py(root, what: str, key: str):
    env = {k: v for k, v in os.environ.items() if k not in ("MLW_SECRET_KEY", "MLW_SECRET_KEY_FILE", "MLW_HOME")}
    return subprocess.run([sys.executable, "-c", ROTATE, str(root), what], env={**env, "MLW_SECRET_KEY": key},
                          capture_output=True, text=True, timeout=300)


def test_rotation_with_keys_from_the_environment_across_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("MLW_HOME", raising=False)
    old, new = new_secret_key(), new_secret_key()
    ws = Workspace.init(tmp_path/"ws", env={"MLW_SECRET_KEY": old})
    _put_all(ws)
    expected = {n: _digest(v) for n, v in VALUES.items()}
    assert json.loads(_py(ws.root, "read", old).stdout) == expected

    p = _py(ws.root, "rotate", f"{new},{old}")  # the operator's sequence: both configured, new first
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(len(VALUES))
    assert json.loads(_py(ws.root, "read", new).stdout) == expected  # the new key alone reads everything
    assert json.loads(_py(ws.root, "read", f"{new},{old}").stdout) == expected

    p = _py(ws.root, "read", old)  # the old key alone: a clear error, in a traceback that shows no value and no key
    assert p.returncode != 0
    assert "SecretKeyMismatch: secret 'alerts.webhook_token' v1 cannot be decrypted with the key(s) from MLW_SECRET_KEY" in p.stderr, p.stderr
    assert "InvalidToken" not in p.stderr  # the chain is cut: `from None`
    assert not _leaks(p.stderr + p.stdout, old, new)
    assert not any(_leaks(p.read_bytes().decode("utf-8", errors="replace")) for p in ws.root.rglob("*") if p.is_file())
    ws.close()


def test_key_file_is_made_0600_once_even_by_racing_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("MLW_HOME", raising=False)
    ws = Workspace.init(tmp_path/"ws", env={})
    assert not (ws.root/SECRET_KEY_FILE).exists()  # made on first use, not at init
    code = ("import os, sys, hashlib; os.umask(0)\n"
            "from mlops_workbench.core.workspace import Workspace\n"
            "print(hashlib.sha256(Workspace.open(sys.argv[1], env={}).secret_keys()[0].encode()).hexdigest())")
    env = {k: v for k, v in os.environ.items() if k != "MLW_HOME"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ws.root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o.strip() for o, _ in outs}) == 1  # one key, whoever made the file
    f = ws.root/SECRET_KEY_FILE
    assert oct(f.stat().st_mode & 0o777) == "0o600"  # even under umask 0
    assert _digest(ws.secret_keys()[0]) == outs[0][0].strip()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(f".{SECRET_KEY_FILE}.")]  # no temp files left
    put_secret(ws, "smtp_password", VALUES["smtp_password"])
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    rotate_secret_key(ws, new_secret_key())  # rewrites the file with the new key first: still 0600
    assert oct(f.stat().st_mode & 0o777) == "0o600" and len(ws.secret_keys()) == 2
    assert get_secret(ws, "smtp_password").reveal() == VALUES["smtp_password"]
    ws.close()



PUT = textwrap.dedent("""
    import sys
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.security.secrets import put_secret
    ws = Workspace.open(sys.argv[1])
    print(" ".join(str(put_secret(ws, "webhook_token", f"xoxb-racing-value-{sys.argv[2]}-{i}", who=f"p{sys.argv[2]}")) for i in range(3)))
""")


def test_processes_writing_the_same_secret_at_once_each_get_their_own_version(sws):
    "Four processes set the same, new secret three times each: no write is lost, and the versions are 1..12 without gaps."
    env = {k: v for k, v in os.environ.items() if k not in ("MLW_SECRET_KEY", "MLW_SECRET_KEY_FILE", "MLW_HOME")}
    sws.secret_keys()  # the key file exists before the race (its own race is tested above)
    procs = [subprocess.Popen([sys.executable, "-c", PUT, str(sws.root), str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e[-2000:] for _, e in outs]
    versions = sorted(int(v) for o, _ in outs for v in o.split())
    assert versions == list(range(1, 13))
    s = get_secret(sws, "webhook_token")
    assert s.version == 12 and s.reveal().startswith("xoxb-racing-value-")
    assert list_secrets(sws)[["name", "version"]].rows() == [("webhook_token", 12)]


REDACT = textwrap.dedent("""
    import sys
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.security.secrets import redact
    text = sys.stdin.read()
    before = redact(text)  # a fresh process has read no secret: nothing to mask yet
    after = redact(text, Workspace.open(sys.argv[1]))  # reads every stored secret first
    print(before == text, after, sep="\\n")
""")


def test_redact_with_the_workspace_masks_every_stored_secret_in_a_fresh_process(lws):
    _put_all(lws)
    env = {k: v for k, v in os.environ.items() if k not in ("MLW_SECRET_KEY", "MLW_SECRET_KEY_FILE", "MLW_HOME")}
    text = f"smtp said no to {VALUES['smtp_password']!r}; hook {VALUES['alerts.webhook_token']}; cfg {json.dumps(VALUES['db.password'])}"
    p = subprocess.run([sys.executable, "-c", REDACT, str(lws.root)], input=text, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    unchanged, masked = p.stdout.split("\n", 1)
    assert unchanged == "True"
    assert masked.strip() == f"smtp said no to '{MASK}'; hook {MASK}; cfg \"{MASK}\"", masked
