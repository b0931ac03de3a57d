"""The online store contract (mlops_workbench.features.online_store), run on every registered `online` scheme against
the real thing: an SQLite file, and Debian's redis-server (plain and TLS) started by the fixtures in conftest.py.
"""
import multiprocessing as mp
import threading

import pytest

from mlops_workbench.core.backends import registry
from mlops_workbench.core.errors import InvalidInput, MLWError, Unauthorized
from mlops_workbench.features.online_store import OnlineStore, RedisOnlineStore, SqliteOnlineStore

T0 = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC in microseconds


def _sqlite_uri(request, tmp_path): return f"sqlite:///{tmp_path}/online.db"
def _redis_uri(request, tmp_path): return request.getfixturevalue("redis_uri")
def _rediss_uri(request, tmp_path): return request.getfixturevalue("rediss_uri")

URIS = {"sqlite": _sqlite_uri, "redis": _redis_uri, "rediss": _rediss_uri}


def _flush(uri):
    "Empty the Redis database the URI names: each test starts from nothing."
    import redis
    with redis.Redis.from_url(uri) as r: r.flushdb()


@pytest.fixture(params=registry("online").schemes)
def store(request, tmp_path):
    "A fresh, empty store for each registered scheme."
    if request.param not in URIS:
        pytest.fail(f"online scheme {request.param!r} is registered but the contract suite cannot start one: add it to URIS")
    uri = URIS[request.param](request, tmp_path)
    if request.param.startswith("redis"): _flush(uri)
    s = registry("online").build(uri)
    assert isinstance(s, OnlineStore)
    yield s
    s.close()


def test_roundtrip_and_missing_keys(store):
    rows = [("d1", T0, b'{"trips":12}'), ("d2", T0 + 1, b'{"trips":3}'), ("d3", T0 - 7, b"")]
    assert store.write("drivers", rows) == 3
    assert store.read([("drivers", ["d1"])]) == [[(T0, b'{"trips":12}')]]
    assert store.read([("drivers", ["nope", "d3", "d1", "also-nope", "d2"])]) == [
        [None, (T0 - 7, b""), (T0, b'{"trips":12}'), None, (T0 + 1, b'{"trips":3}')]]
    assert store.read([("drivers", ["d1", "d1"])]) == [[(T0, b'{"trips":12}')] * 2]
    assert store.read([("other_view", ["d1"])]) == [[None]]
    assert store.count("drivers") == 3
    store.ping()


def test_newer_wins_older_ignored_equal_time_new_wins(store):
    store.write("v", [("k", T0, b"first")])
    store.write("v", [("k", T0 - 1, b"older")])
    assert store.read([("v", ["k"])]) == [[(T0, b"first")]]
    store.write("v", [("k", T0, b"same time, newer write")])
    assert store.read([("v", ["k"])]) == [[(T0, b"same time, newer write")]]
    store.write("v", [("k", T0 + 1, b"newer")])
    assert store.read([("v", ["k"])]) == [[(T0 + 1, b"newer")]]
    # within one call, rows apply in order: the older duplicate is ignored, the equal-time one wins
    store.write("v", [("j", 5, b"a"), ("j", 3, b"b"), ("j", 5, b"c")])
    assert store.read([("v", ["j"])]) == [[(5, b"c")]]


def test_reads_see_writes_committed_elsewhere(store):
    "A one-key read (the fast path) and a many-key read both see a write made through another connection."
    other = type(store)(store.uri)
    store.write("v", [("k", 1, b"old"), ("j", 1, b"old")])
    assert store.read([("v", ["k"])]) == [[(1, b"old")]] and store.read([("v", ["k", "j"])]) == [[(1, b"old")] * 2]
    other.write("v", [("k", 2, b"new"), ("j", 2, b"new")])
    assert store.read([("v", ["k"])]) == [[(2, b"new")]] and store.read([("v", ["k", "j"])]) == [[(2, b"new")] * 2]
    other.close()


def test_event_times_across_the_whole_int64_range(store):
    "Times before the epoch and near the int64 limits compare exactly (Redis compares bytes, not Lua doubles)."
    store.write("v", [("k", -5, b"a")])
    store.write("v", [("k", -10, b"older")])
    assert store.read([("v", ["k"])]) == [[(-5, b"a")]]
    store.write("v", [("k", 3, b"b")])
    assert store.read([("v", ["k"])]) == [[(3, b"b")]]
    big = 2**62 + 1  # not representable as a double: 2**62 and 2**62 + 1 are the same number in Lua
    store.write("v", [("k", big, b"big")])
    store.write("v", [("k", 2**62, b"smaller by one")])
    assert store.read([("v", ["k"])]) == [[(big, b"big")]]
    store.write("v", [("k", 2**63 - 1, b"max"), ("m", -2**63, b"min")])
    assert store.read([("v", ["k", "m"])]) == [[(2**63 - 1, b"max"), (-2**63, b"min")]]


def test_many_views_and_thousands_of_keys_in_one_read(store):
    for v in ("a", "b", "c"):
        store.write(v, [(f"{v}{i}", T0 + i, f"{v}:{i}".encode()) for i in range(5000)])
    keys = [f"a{i}" for i in range(0, 6000, 3)]  # a5000.. are missing
    req = [("a", keys), ("b", ["b17", "zz", "b4999"]), ("c", []), ("missing_view", ["c1"]), ("c", [f"c{i}" for i in range(4999, -1, -1)])]
    res = store.read(req)
    assert [len(r) for r in res] == [len(keys), 3, 0, 1, 5000]
    assert res[0] == [(T0 + i, f"a:{i}".encode()) if i < 5000 else None for i in range(0, 6000, 3)]
    assert res[1] == [(T0 + 17, b"b:17"), None, (T0 + 4999, b"b:4999")]
    assert res[2:4] == [[], [None]]
    assert res[4] == [(T0 + i, f"c:{i}".encode()) for i in range(4999, -1, -1)]
    # more keys than SQLite's variable limit allows in one statement: still answered in order
    big = [f"b{i}" for i in range(5000)] * 8 + ["none"]
    got = store.read([("b", big)])[0]
    assert len(got) == 40001 and got[-1] is None and got[5000 * 7 + 123] == (T0 + 123, b"b:123")


def test_drop_and_count(store):
    store.write("v", [(f"k{i}", 1, b"x") for i in range(2500)])
    store.write("v@v2", [("k1", 1, b"y")])
    store.write("v*", [("k1", 1, b"z")])  # glob characters in a view name match only themselves
    store.write("[v]?", [("k1", 1, b"z")])
    assert [store.count(v) for v in ("v", "v@v2", "v*", "[v]?", "nothing")] == [2500, 1, 1, 1, 0]
    assert store.drop("v*") == 1
    assert store.drop("v") == 2500
    assert store.drop("v") == 0
    assert [store.count(v) for v in ("v", "v@v2", "v*", "[v]?")] == [0, 1, 0, 1]
    assert store.read([("v", ["k1"]), ("v@v2", ["k1"])]) == [[None], [(1, b"y")]]


def test_unicode_keys_and_views(store):
    keys = ["Zoë", "東京", "🚕 42", "a:b", "", "tab\there", "x" * 1000]
    store.write("vüé", [(k, i, k.encode()) for i, k in enumerate(keys)])
    assert store.read([("vüé", keys)]) == [[(i, k.encode()) for i, k in enumerate(keys)]]
    assert store.count("vüé") == len(keys)


def test_empty_requests_and_writes(store):
    assert store.read([]) == []
    assert store.read([("v", [])]) == [[]]
    assert store.read([("v", []), ("w", ())]) == [[], []]
    assert store.write("v", []) == 0
    assert store.count("v") == 0


def test_binary_payloads(store):
    payloads = [b"\x00", b"\x00\x00abc\x00", bytes(range(256)), b"\xff" * 9, b"", bytes(1 << 20)]
    store.write("bin", [(f"k{i}", i, p) for i, p in enumerate(payloads)])
    store.write("bin", [("ba", 1, bytearray(b"\x00ba")), ("mv", 1, memoryview(b"\x00mv"))])
    assert store.read([("bin", [f"k{i}" for i in range(len(payloads))] + ["ba", "mv"])]) == [
        [(i, p) for i, p in enumerate(payloads)] + [(1, b"\x00ba"), (1, b"\x00mv")]]


@pytest.mark.parametrize("call, match", [
    (lambda s: s.read([(None, ["k"])]), "online view None is invalid"),
    (lambda s: s.read([("", ["k"])]), "online view '' is invalid"),
    (lambda s: s.read([("a:b", ["k"])]), "online view 'a:b' is invalid"),
    (lambda s: s.read([("v", "k")]), "keys must be a sequence of str"),
    (lambda s: s.read([("v", [1])]), "keys must be a sequence of str"),
    (lambda s: s.read([("v", ["k", b"k"])]), "keys must be a sequence of str"),
    (lambda s: s.write("v", [("k", 1, b"x"), ("k2", "1", b"x")]), "row 1"),
    (lambda s: s.write("v", [("k", 1, b"x"), ("k2", True, b"x")]), "row 1"),
    (lambda s: s.write("v", [("k", 1, b"x"), ("k2", 1, "str payload")]), "row 1"),
    (lambda s: s.write("v", [("k", 1, b"x"), ("k2", 2**63, b"x")]), "row 1"),
    (lambda s: s.write("v", [("k", 1, b"x"), ("k2", 1)]), "row 1"),
    (lambda s: s.write("v", [("k", 1, b"x"), (7, 1, b"x")]), "row 1"),
    (lambda s: s.drop(3), "online view 3 is invalid"),
    (lambda s: s.count("a:b"), "online view 'a:b' is invalid"),
])
def test_invalid_input_is_refused_and_writes_nothing(store, call, match):
    with pytest.raises(InvalidInput, match=match.replace("(", r"\(").replace("*", r"\*")):
        call(store)
    assert store.count("v") == 0


def test_workspace_default_is_a_sqlite_file_in_the_workspace(ws):
    s = ws.backend("online")
    assert isinstance(s, SqliteOnlineStore) and s.uri == f"sqlite:///{ws.root}/online.db"
    s.write("v", [("k", 1, b"x")])
    assert (ws.root/"online.db").exists() and s.read([("v", ["k"])]) == [[(1, b"x")]]
    assert repr(s) == f"SqliteOnlineStore('sqlite:///{ws.root}/online.db')"


def test_sqlite_file_that_is_not_a_database_is_named(tmp_path):
    bad = tmp_path/"online.db"
    bad.write_bytes(b"definitely not sqlite" * 200)
    with pytest.raises(MLWError, match=f"online store '{bad}' cannot be used"):
        SqliteOnlineStore(f"sqlite:///{bad}")
    with pytest.raises(MLWError, match=f"online store '{tmp_path}' cannot be used"):
        SqliteOnlineStore(f"sqlite:///{tmp_path}")  # a folder


def test_sqlite_connection_per_thread(tmp_path):
    s = SqliteOnlineStore(f"sqlite:///{tmp_path}/o.db")
    s.write("v", [("k", 1, b"x")])
    conns, errors = set(), []
    def reader():
        try:
            for _ in range(200): assert s.read([("v", ["k"])]) == [[(1, b"x")]]
            conns.add(id(s._local.cur.connection))
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=reader) for _ in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert not errors and len(conns) == 4
    s.close()
    assert s.read([("v", ["k"])]) == [[(1, b"x")]]  # reopens after close


def test_unreachable_redis_is_named_with_the_fix():
    uri = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    s = RedisOnlineStore(uri)
    for call in (s.ping, lambda: s.read([("v", ["k"])]), lambda: s.write("v", [("k", 1, b"x")]), lambda: s.count("v"), lambda: s.drop("v")):
        with pytest.raises(MLWError, match=r"online store 'redis://127\.0\.0\.1:1/0' is unreachable \(ConnectionError: .*\); "
                                            r"start Redis or change \[backends\] online in mlw\.toml"):
            call()
    with pytest.raises(MLWError, match="online store 'redis://no-such-host.invalid:6379/0' is unreachable"):
        RedisOnlineStore("redis://no-such-host.invalid:6379/0").ping()
    with pytest.raises(InvalidInput, match="online store 'redis://127.0.0.1:1/zero'"):
        RedisOnlineStore("redis://127.0.0.1:1/zero")


def test_password_never_appears(redis_uri):
    import redis
    port = int(redis_uri.rsplit(":", 1)[1].split("/")[0])
    with redis.Redis.from_url(redis_uri) as r: r.execute_command("ACL", "SETUSER", "app", "on", ">s3cret-pw", "~*", "+@all")
    good = RedisOnlineStore(f"redis://app:s3cret-pw@127.0.0.1:{port}/0")
    good.ping()
    assert good.uri == f"redis://app:***@127.0.0.1:{port}/0" and "s3cret-pw" not in repr(good)
    wrong = RedisOnlineStore(f"redis://app:wrong-pw@127.0.0.1:{port}/0")
    with pytest.raises(Unauthorized) as e: wrong.read([("v", ["k"])])
    assert "wrong-pw" not in str(e.value) and f"'redis://app:***@127.0.0.1:{port}/0' refused the credentials" in str(e.value)
    closed = RedisOnlineStore("redis://:s3cret-pw@127.0.0.1:1/0")
    with pytest.raises(MLWError) as e: closed.ping()
    assert "s3cret-pw" not in str(e.value) and "s3cret-pw" not in repr(closed) and "'redis://:***@127.0.0.1:1/0'" in str(e.value)


# --- concurrency: a writer process against reader threads -----------------------------------------------------------

N_KEYS, GENERATIONS = 500, 150


def _payload(g: int) -> bytes: return g.to_bytes(4, "big") * 16


def _write_generations(store, view, keys, parent_connections):
    "In the forked writer: rewrite every key with generation g (event time g, payload g repeated), g = 1..GENERATIONS."
    for g in range(1, GENERATIONS + 1): store.write(view, [(k, g, _payload(g)) for k in keys])
    if isinstance(store, SqliteOnlineStore):  # fork safety: the child opened its own connection
        assert id(store._local.cur.connection) not in parent_connections, "the forked writer used its parent's SQLite connection"


def test_concurrent_writer_process_and_reader_threads(store):
    keys = [f"k{i}" for i in range(N_KEYS)]
    store.write("warmup", [("k", 0, b"")])  # the parent holds an open connection when it forks: the child must not use it
    parent_connections = {id(c) for c in getattr(store, "_conns", [])}
    writer = mp.get_context("fork").Process(target=_write_generations, args=(store, "gen", keys, parent_connections))
    done, failures, batches, seen = threading.Event(), [], [0] * 3, [set() for _ in range(3)]
    transactional = isinstance(store, SqliteOnlineStore)

    def reader(n):
        last = [0] * N_KEYS
        try:
            while True:
                finished = done.is_set()  # read once more after the writer finished
                got = store.read([("gen", keys)])[0]
                gens = set()
                for i, r in enumerate(got):
                    if r is None: g = 0
                    else:
                        ev, p = r
                        g = int.from_bytes(p[:4], "big")
                        assert p == _payload(g), f"torn payload for {keys[i]}: {p!r}"
                        assert ev == g, f"{keys[i]}: event time {ev} but payload of generation {g}"
                    assert g >= last[i], f"{keys[i]} went back from generation {last[i]} to {g}"
                    last[i] = g
                    gens.add(g)
                if transactional: assert len(gens) == 1, f"one read saw generations {sorted(gens)}: a write was not one transaction"
                batches[n] += 1
                seen[n] |= gens
                if finished: break
        except BaseException as e: failures.append(e)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    writer.start()
    for t in threads: t.start()
    writer.join(300)
    done.set()
    for t in threads: t.join(60)
    assert writer.exitcode == 0, f"writer process failed with exit code {writer.exitcode}"
    assert not failures, failures[0]
    assert store.read([("gen", keys)])[0] == [(GENERATIONS, _payload(GENERATIONS))] * N_KEYS
    assert all(GENERATIONS in s for s in seen)
    assert len(set().union(*seen)) > 2, "the readers never overlapped the writer: the test proved nothing"
    print(f"{type(store).__name__}: {sum(batches)} reads of {N_KEYS} keys during {GENERATIONS} writes, "
          f"{len(set().union(*seen))} generations seen")
