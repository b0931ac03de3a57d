"""Alert sinks against real receivers (a loopback HTTP server, an aiosmtpd SMTP server), the persisted retry queue
through outages, exactly-once claims across processes, and secrets kept out of errors, payloads and logs.

The clock is passed explicitly (`now=`) to step past backoffs and cooldowns: nothing here sleeps or times itself.
"""
import datetime as dt
import json
import subprocess
import sys
import textwrap
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from conftest import free_port
from pg import pg_new_database, pg_server  # noqa: F401  (fixtures)
from mlops_workbench.alerts import (AlertRule, Threshold, acknowledge, deliver_pending, fire, list_alerts,
                                    list_deliveries, resolve, retry_failed)
from mlops_workbench.core.errors import Conflict, InvalidInput, NotFound
from mlops_workbench.core.workspace import Workspace
from mlops_workbench.core.metadata import alerts

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
RULE = AlertRule("null_share_high", "critical", Threshold("null_share", ">", 0.05), dedup_by=["column"], cooldown=600)


def later(minutes):
    return T0 + dt.timedelta(minutes=minutes)


class Receiver:
    "A loopback HTTP server recording each POST; `codes` are answered in turn (then 200), `delays` slept in turn (then 0)."
    def __init__(self, port=None, codes=(), delays=()):
        self.port, self.codes, self.delays, self.received = port or free_port(), list(codes), list(delays), []
        self.server = None

    def start(self):
        rec = self
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if rec.delays: time.sleep(rec.delays.pop(0))
                code = rec.codes.pop(0) if rec.codes else 200
                try:
                    self.send_response(code); self.end_headers(); self.wfile.write(b"ok" if code < 300 else b"broken")
                except OSError: pass  # the client timed out and left
            def log_message(self, *a): pass
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server: self.server.shutdown(); self.server.server_close()

    @property
    def url(self): return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver():
    made = []
    def make(**kw):
        made.append(Receiver(**kw)); return made[-1]
    yield make
    for r in made: r.stop()


class Mailbox:
    "An aiosmtpd handler keeping each envelope."
    def __init__(self): self.envelopes = []
    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope); return "250 OK"


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    started = []
    def start(port=None, authenticator=None):
        box = Mailbox()
        kw = dict(authenticator=authenticator, auth_require_tls=False) if authenticator else {}
        ctl = Controller(box, hostname="127.0.0.1", port=port or free_port(), **kw)
        ctl.start(); started.append(ctl)
        return ctl, box
    yield start
    for c in started: c.stop()


def use_sinks(ws, *sinks, **settings):
    ws.settings["alerts"] = {"sinks": list(sinks), **settings}


def one_delivery(ws, alert):
    [d] = list_deliveries(ws, alert.id)
    return d


# -- webhook ---------------------------------------------------------------------------------------------------------

def test_webhook_receives_the_json_payload(ws, receiver, monkeypatch):
    monkeypatch.setenv("MLW_TEST_HOOK_AUTH", "Bearer tok-123")
    r = receiver().start()
    use_sinks(ws, {"kind": "webhook", "url": r.url, "headers": {"X-Team": "data"}, "headers_env": {"Authorization": "MLW_TEST_HOOK_AUTH"}})
    a = fire(ws, RULE, "dataset:applications", "amount: 12% nulls", "Column amount is 12% null.",
             details={"null_share": 0.12}, labels={"column": "amount"}, now=T0)
    [got] = r.received
    assert got["path"] == "/hook"
    assert got["headers"]["X-Team"] == "data" and got["headers"]["Authorization"] == "Bearer tok-123"
    assert got["headers"]["Content-Type"] == "application/json"
    b = got["body"]
    assert (b["event"], b["id"], b["rule"], b["severity"], b["status"], b["count"]) == ("new", a.id, "null_share_high", "critical", "firing", 1)
    assert (b["details"], b["labels"], b["first_seen"]) == ({"null_share": 0.12}, {"column": "amount"}, T0.isoformat())
    d = one_delivery(ws, a)
    assert (d.status, d.attempts, d.last_error, d.delivered_at) == ("delivered", 1, None, T0)
    assert "tok-123" not in json.dumps(d.payload)


def test_webhook_error_status_is_retried_until_it_succeeds(ws, receiver):
    r = receiver(codes=[500, 503]).start()
    use_sinks(ws, {"kind": "webhook", "url": r.url})
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)
    d = one_delivery(ws, a)
    assert (d.status, d.attempts, d.next_attempt_at) == ("pending", 1, T0 + dt.timedelta(seconds=30))
    assert "HTTP 500" in d.last_error
    assert deliver_pending(ws, now=later(0.1))["delivered"] == 0 and len(r.received) == 1  # backing off: not due yet
    assert deliver_pending(ws, now=later(1))["retrying"] == 1
    d = one_delivery(ws, a)
    assert (d.attempts, d.next_attempt_at) == (2, later(1) + dt.timedelta(seconds=60)) and "HTTP 503" in d.last_error
    assert deliver_pending(ws, now=later(3)) == {"delivered": 1, "retrying": 0, "failed": 0, "skipped": 0}
    d = one_delivery(ws, a)
    assert (d.status, d.attempts, d.last_error) == ("delivered", 3, None)
    assert [x["body"]["id"] for x in r.received] == [a.id] * 3


def test_webhook_receiver_down_keeps_the_alert_until_it_is_up(ws, receiver):
    r = receiver()  # its port is free: nothing listens yet
    use_sinks(ws, {"kind": "webhook", "url": r.url, "timeout": 5})
    alerts_ = [fire(ws, RULE, "dataset:applications", f"{c}: nulls", labels={"column": c}, now=T0) for c in ("amount", "income")]
    ds = list_deliveries(ws)
    assert [(d.status, d.attempts) for d in ds] == [("pending", 1), ("pending", 1)]
    assert all("ConnectError" in d.last_error for d in ds)
    r.start()
    assert deliver_pending(ws, now=later(5))["delivered"] == 2
    assert sorted(x["body"]["id"] for x in r.received) == sorted(a.id for a in alerts_)
    assert {d.status for d in list_deliveries(ws)} == {"delivered"}


def test_webhook_slower_than_its_timeout_is_a_failure_then_retried(ws, receiver):
    r = receiver(delays=[5]).start()
    use_sinks(ws, {"kind": "webhook", "url": r.url, "timeout": 1})
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)
    d = one_delivery(ws, a)
    assert d.status == "pending" and "Timeout" in d.last_error
    assert deliver_pending(ws, now=later(1))["delivered"] == 1
    assert one_delivery(ws, a).status == "delivered"
    # At least once: the slow receiver got the first POST too, it just answered too late.
    assert [x["body"]["id"] for x in r.received] == [a.id, a.id]


def test_failed_after_max_attempts_then_retry_failed(ws, receiver):
    r = receiver()
    use_sinks(ws, {"kind": "webhook", "url": r.url}, max_attempts=2, backoff=10)
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)
    assert deliver_pending(ws, now=later(1))["failed"] == 1
    d = one_delivery(ws, a)
    assert (d.status, d.attempts) == ("failed", 2) and "ConnectError" in d.last_error
    assert deliver_pending(ws, now=later(600))["failed"] == 0  # failed rows wait for a person
    r.start()
    assert retry_failed(ws, alert_id=a.id, now=later(601)) == 1
    assert (one_delivery(ws, a).status, len(r.received)) == ("delivered", 1)


def test_sink_settings_are_checked_before_anything_is_written(ws):
    use_sinks(ws, {"kind": "webhook", "url": "http://user:pw@127.0.0.1:9/x"})
    with pytest.raises(InvalidInput, match="embeds credentials"): fire(ws, RULE, "s", "t", labels={"column": "a"})
    use_sinks(ws, {"kind": "jsonl"}, {"kind": "jsonl", "path": "{workspace}/b.jsonl"})
    with pytest.raises(InvalidInput, match="two alert sinks are named 'jsonl'"): fire(ws, RULE, "s", "t", labels={"column": "a"})
    with pytest.raises(InvalidInput, match="fire got no \\['column'\\]"): fire(ws, RULE, "s", "t")
    assert list_alerts(ws) == [] and list_deliveries(ws) == []


# -- email -----------------------------------------------------------------------------------------------------------

def test_email_reaches_the_smtp_server(ws, smtp_server):
    ctl, box = smtp_server()
    use_sinks(ws, {"kind": "smtp", "host": "127.0.0.1", "port": ctl.port, "sender": "mlw@example.org", "to": ["oncall@example.org", "data@example.org"]})
    a = fire(ws, RULE, "dataset:applications", "amount: 12% nulls", "Column amount is 12% null.",
             details={"null_share": 0.12}, labels={"column": "amount"}, now=T0)
    [env] = box.envelopes
    assert (env.mail_from, env.rcpt_tos) == ("mlw@example.org", ["oncall@example.org", "data@example.org"])
    msg = message_from_bytes(env.content)
    assert msg["Subject"] == "[CRITICAL] amount: 12% nulls"
    assert msg["To"] == "oncall@example.org, data@example.org"
    body = msg.get_payload(decode=True).decode()
    assert "Column amount is 12% null." in body and "rule: null_share_high" in body and '"null_share": 0.12' in body
    assert one_delivery(ws, a).status == "delivered"


def test_smtp_server_down_then_up(ws, smtp_server):
    port = free_port()
    use_sinks(ws, {"kind": "smtp", "host": "127.0.0.1", "port": port, "sender": "mlw@example.org", "to": "oncall@example.org"})
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)
    d = one_delivery(ws, a)
    assert d.status == "pending" and "ConnectionRefused" in d.last_error
    _, box = smtp_server(port=port)
    assert deliver_pending(ws, now=later(1))["delivered"] == 1
    assert [e.rcpt_tos for e in box.envelopes] == [["oncall@example.org"]]


def test_secrets_stay_out_of_errors_payloads_and_the_log(ws, smtp_server, monkeypatch):
    from aiosmtpd.smtp import AuthResult, LoginPassword
    secret, seen, accept = "s3cr3t-Hunter2-pw", [], [False]
    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        seen.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=accept[0], handled=False)  # handled=False: aiosmtpd answers 535 itself
    ctl, box = smtp_server(authenticator=authenticator)
    use_sinks(ws, {"kind": "jsonl"}, {"kind": "smtp", "name": "email", "host": "127.0.0.1", "port": ctl.port, "sender": "mlw@example.org",
                                      "to": ["oncall@example.org"], "username": "mlw", "password_env": "MLW_TEST_SMTP_PASSWORD"})
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)  # the variable is not set yet
    d = {x.sink: x for x in list_deliveries(ws, a.id)}
    assert d["jsonl"].status == "delivered" and d["email"].status == "pending"
    assert "'MLW_TEST_SMTP_PASSWORD'" in d["email"].last_error and "is not set" in d["email"].last_error
    errors = [d["email"].last_error]
    monkeypatch.setenv("MLW_TEST_SMTP_PASSWORD", secret)
    deliver_pending(ws, now=later(1))  # the server refuses the login
    d = {x.sink: x for x in list_deliveries(ws, a.id)}
    assert d["email"].status == "pending" and "SMTPAuthenticationError" in d["email"].last_error
    errors.append(d["email"].last_error)
    assert seen and seen[-1] == ("mlw", secret)  # the password was really sent ...
    accept[0] = True
    assert deliver_pending(ws, now=later(10))["delivered"] == 1
    assert len(box.envelopes) == 1
    # ... and is nowhere we keep things.
    with ws.metadata.begin() as c:
        stored = json.dumps([list(r) for t in ("alerts", "alert_deliveries") for r in c.execute(sa.text(f"SELECT * FROM {t}")).all()], default=str)
    everything = "\n".join([*errors, stored, ws.path("alerts.jsonl").read_text(), json.dumps([x.to_dict() for x in list_deliveries(ws)])])
    assert secret not in everything


# -- dedup, cooldown, history ----------------------------------------------------------------------------------------

def test_dedup_and_cooldown_counts(ws, receiver):
    r = receiver().start()
    use_sinks(ws, {"kind": "webhook", "url": r.url}, {"kind": "jsonl"})
    for m in (0, 1, 5, 9):
        a = fire(ws, RULE, "dataset:applications", "amount nulls", labels={"column": "amount", "value": m}, now=later(m))
    assert (a.count, a.first_seen, a.last_seen, a.last_notified, a.labels["value"]) == (4, T0, later(9), T0, 9)
    assert len(r.received) == 1 and len(ws.path("alerts.jsonl").read_text().splitlines()) == 1
    a = fire(ws, RULE, "dataset:applications", "amount nulls", labels={"column": "amount"}, now=later(10))  # cooldown (600 s) over
    assert (a.count, a.last_notified, [x["body"]["event"] for x in r.received]) == (5, later(10), ["new", "repeat"])
    other = fire(ws, RULE, "dataset:applications", "income nulls", labels={"column": "income"}, now=later(11))
    elsewhere = fire(ws, RULE, "dataset:customers", "amount nulls", labels={"column": "amount"}, now=later(11))
    assert len({a.id, other.id, elsewhere.id}) == 3 and len(r.received) == 4
    assert len(list_deliveries(ws)) == 8  # 4 notifications x 2 sinks
    acknowledge(ws, a.id, "dana", now=later(12))
    a = fire(ws, RULE, "dataset:applications", "amount nulls", labels={"column": "amount"}, now=later(60))
    assert (a.status, a.count, len(r.received)) == ("acknowledged", 6, 4)  # acknowledged: no reminders
    resolve(ws, a.id, now=later(61))
    again = fire(ws, RULE, "dataset:applications", "amount nulls", labels={"column": "amount"}, now=later(62))
    assert (again.id != a.id, again.count, again.status, len(r.received)) == (True, 1, "firing", 5)


def test_acknowledge_and_resolve_conflicts(ws):
    a = fire(ws, RULE, "dataset:applications", "nulls", labels={"column": "amount"}, now=T0)
    with pytest.raises(NotFound, match="alert 4242 not found"): resolve(ws, 4242)
    with pytest.raises(InvalidInput, match="must name who"): acknowledge(ws, a.id, " ")
    a = acknowledge(ws, a.id, "dana", now=later(1))
    assert (a.status, a.acknowledged_by, a.acknowledged_at) == ("acknowledged", "dana", later(1))
    with pytest.raises(Conflict, match="already acknowledged by 'dana'"): acknowledge(ws, a.id, "lee")
    a = resolve(ws, a.id, by="lee", now=later(2))
    assert (a.status, a.resolved_at, a.resolved_by, a.acknowledged_by) == ("resolved", later(2), "lee", "dana")
    with pytest.raises(Conflict, match="was resolved at"): resolve(ws, a.id)
    with pytest.raises(Conflict, match="was resolved at"): acknowledge(ws, a.id, "lee")
    assert [x.status for x in list_alerts(ws, status="resolved")] == ["resolved"] and list_alerts(ws, status="open") == []
    with pytest.raises(InvalidInput, match="status 'closed' is unknown"): list_alerts(ws, status="closed")


# -- two processes at once, on every metadata backend -----------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys, time, datetime as dt
    from pathlib import Path
    from mlops_workbench.core.workspace import Workspace
    from mlops_workbench.alerts import AlertRule, fire, deliver_pending
    root, go, job = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    ws = Workspace.open(root)
    ws.settings["alerts"] = {"sinks": [{"kind": "webhook", "url": sys.argv[4]}]}
    while not go.exists(): time.sleep(0.01)
    if job == "deliver": print(deliver_pending(ws))
    else:
        rule = AlertRule("row_count_low", "warning", cooldown=3600)
        for i in range(10): fire(ws, rule, "dataset:transactions", f"low rows #{i}", deliver=False)
""")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ws(request, tmp_path, monkeypatch):
    "A workspace on each metadata backend."
    monkeypatch.delenv("MLW_HOME", raising=False)
    backends = {"metadata": request.getfixturevalue("pg_new_database")()} if request.param == "postgresql" else None
    ws = Workspace.init(tmp_path/"ws", backends=backends)
    yield ws
    ws.close()


def run_two(ws, job, url, tmp_path):
    "Run WORKER `job` in two processes released at the same moment; return their outputs."
    go = tmp_path/f"go-{job}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(ws.root), str(go), job, url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)]
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    return [o for o, _ in outs]


def test_two_processes_deliver_each_row_exactly_once(any_ws, receiver, tmp_path):
    ws = any_ws
    r = receiver(delays=[0.02] * 40).start()  # slow enough that the two senders overlap
    use_sinks(ws, {"kind": "webhook", "url": r.url})
    ids = [fire(ws, RULE, "dataset:applications", f"c{i} nulls", labels={"column": f"c{i}"}, now=T0, deliver=False).id for i in range(24)]
    outs = run_two(ws, "deliver", r.url, tmp_path)
    got = sorted(x["body"]["id"] for x in r.received)
    assert got == sorted(ids), outs  # every alert once: none lost, none twice
    assert {(d.status, d.attempts) for d in list_deliveries(ws)} == {("delivered", 1)}
    totals = [eval(o.strip().splitlines()[-1]) for o in outs]
    assert sum(t["delivered"] for t in totals) == 24 and sum(t["delivered"] + t["skipped"] for t in totals) >= 24


def test_two_processes_firing_one_rule_share_one_alert(any_ws, tmp_path):
    ws = any_ws
    run_two(ws, "fire", "http://127.0.0.1:9/unused", tmp_path)
    [a] = list_alerts(ws)
    assert (a.rule, a.count, a.status) == ("row_count_low", 20, "firing")
    with ws.metadata.begin() as c: assert c.execute(sa.select(sa.func.count()).select_from(alerts)).scalar() == 1
    assert len(list_deliveries(ws, a.id)) == 1  # notified once; the rest fell in the cooldown
