"""The C2SP witness: cosignatures, the add-checkpoint rules, persistence, HTTP, and a real
witness process refusing a forked and a truncated log."""

import base64
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from hashlib import sha256

import httpx
import pytest
from starlette.testclient import TestClient

from sandbank.audit.checkpoint import Checkpoint, NoteError, open_checkpoint, verifier_key
from sandbank.audit.log import AuditLog, subtree_hash
from sandbank.audit.merkle import consistency_proof
from sandbank.audit.witness import (
    SIZE_CONTENT_TYPE,
    Witness,
    WitnessRefused,
    add_cosignature,
    build_witness,
    cosign,
    encode_add_checkpoint,
    fetch_latest,
    load_or_create_key,
    make_app,
    open_cosignature,
    parse_log_key,
    parse_log_option,
    parse_witness_key,
    submit,
    submit_synced,
    witness_verifier_key,
)
from sandbank.economy import public_kinds
from sandbank.identity.keys import SigningKey, verify_signature
from sandbank.store.sqlite import SQLiteStore

ORIGIN = "sandbank.test/log"
LOG_NAME = "sandbank.test/log"
LOG_KEY = SigningKey.from_seed(sha256(b"test log key").digest())
W_NAME = "witness.test/w1"
W_KEY = SigningKey.from_seed(sha256(b"test witness key").digest())
LOGS = {ORIGIN: (LOG_NAME, LOG_KEY.public)}


class Log:
    """A real sandbank audit log: `tick()` appends a few entries and commits a checkpoint.
    Two logs with the same key and `variant` share their history; a different variant from
    some tick on is a fork of the same log (same origin, same key)."""

    def __init__(self, path, key=LOG_KEY):
        self.store = SQLiteStore(path)
        self.log = AuditLog(self.store, ORIGIN, LOG_NAME, key, public_kinds())
        self.ticks = 0

    def tick(self, entries=3, variant="main"):
        self.ticks += 1
        for i in range(entries):
            self.log.append(self.ticks, {"kind": "x", "i": i, "variant": variant})
        state = sha256(f"{variant}/{self.ticks}".encode()).digest()
        return self.log.commit(self.ticks, state).note

    @property
    def size(self):
        return self.store.last_checkpoint().size

    def proof(self, old):
        return consistency_proof(old, self.size, lambda a, b: subtree_hash(self.store, a, b))

    def request(self, old):
        return encode_add_checkpoint(self.store.last_checkpoint().note, old, self.proof(old))


class Clock:
    def __init__(self, t=1_700_000_000):
        self.t = t

    def __call__(self):
        self.t += 1
        return self.t


@pytest.fixture
def log(tmp_path):
    lg = Log(tmp_path / "log.db")
    yield lg
    lg.store.close()


@pytest.fixture
def witness(tmp_path):
    w = Witness(W_NAME, W_KEY, LOGS, tmp_path / "witness.db", clock=Clock())
    yield w
    w.close()


def b64(raw):
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------- cosignatures


def test_cosignature_round_trip_follows_tlog_cosignature_v1(log):
    note = log.tick()
    line = cosign(note, W_NAME, W_KEY, 1_679_315_147)
    cosigned = add_cosignature(note, line)
    assert cosigned == note + line and add_cosignature(cosigned, line) == cosigned
    cp, ts = open_cosignature(cosigned, W_NAME, W_KEY.public)
    assert ts == 1_679_315_147
    assert cp == open_checkpoint(cosigned, LOG_NAME, LOG_KEY.public)  # the log signature still holds
    # the wire format, checked independently: key ID with 0x04, u64 timestamp, signed message
    dash, name, sig = line.rstrip("\n").split(" ")
    raw = base64.b64decode(sig)
    assert (dash, name, len(raw)) == ("\u2014", W_NAME, 4 + 8 + 64)
    assert raw[:4] == sha256(W_NAME.encode() + b"\n\x04" + W_KEY.public).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1_679_315_147
    body = note.split("\n\n")[0] + "\n"
    assert verify_signature(W_KEY.public, raw[12:],
                            b"cosignature/v1\ntime 1679315147\n" + body.encode())


def test_cosignatures_by_another_key_on_an_altered_note_or_time_are_refused(log):
    note = log.tick()
    other = SigningKey.from_seed(b"\x09" * 32)
    with pytest.raises(NoteError, match="no cosignature"):
        open_cosignature(add_cosignature(note, cosign(note, W_NAME, other, 5)), W_NAME, W_KEY.public)
    # the log's own (0x01) signature is not a cosignature, even under the log's name and key
    with pytest.raises(NoteError, match="no cosignature"):
        open_cosignature(note, LOG_NAME, LOG_KEY.public)

    cosigned = add_cosignature(note, cosign(note, W_NAME, W_KEY, 5))
    lines = cosigned.split("\n")
    lines[1] = str(int(lines[1]) + 1)  # the tree size
    with pytest.raises(NoteError, match="does not verify"):
        open_cosignature("\n".join(lines), W_NAME, W_KEY.public)
    lines = cosigned.split("\n")
    lines[3] = "tick 99"  # an extension line is signed over too
    with pytest.raises(NoteError, match="does not verify"):
        open_cosignature("\n".join(lines), W_NAME, W_KEY.public)

    body, _, sigs = cosigned.partition("\n\n")
    dash, name, sig = sigs.splitlines()[1].split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[4:12] = (6).to_bytes(8, "big")  # the same signature claimed for another time
    moved = f"{body}\n\n{sigs.splitlines()[0]}\n{dash} {name} {b64(bytes(raw))}\n"
    with pytest.raises(NoteError, match="does not verify"):
        open_cosignature(moved, W_NAME, W_KEY.public)


def test_witness_keys_have_type_0x04_and_log_keys_0x01():
    vkey = witness_verifier_key(W_NAME, W_KEY.public)
    name, kid, key = vkey.split("+", 2)
    assert base64.b64decode(key)[0] == 0x04
    assert kid == sha256(W_NAME.encode() + b"\n\x04" + W_KEY.public).digest()[:4].hex()
    assert parse_witness_key(vkey) == (W_NAME, W_KEY.public)
    log_vkey = verifier_key(LOG_NAME, LOG_KEY.public)
    assert parse_log_key(log_vkey) == (LOG_NAME, LOG_KEY.public)
    with pytest.raises(NoteError, match=r"ordinary signed-note .*0x01.*not a witness"):
        parse_witness_key(log_vkey)
    with pytest.raises(NoteError, match=r"witness cosigner key \(type 0x04\), not a log"):
        parse_log_key(vkey)
    with pytest.raises(NoteError, match="hash does not match"):
        parse_witness_key(vkey.replace(kid, "00000000"))
    with pytest.raises(ValueError, match="ORIGIN=NAME"):
        parse_log_option(log_vkey)
    with pytest.raises(ValueError, match="0x04"):
        parse_log_option(f"{ORIGIN}={vkey}")
    assert parse_log_option(f"{ORIGIN}={log_vkey}") == (ORIGIN, (LOG_NAME, LOG_KEY.public))


# ---------------------------------------------------------------- add-checkpoint


def test_accepts_a_first_checkpoint_then_proofs_and_survives_a_restart(log, tmp_path):
    w = Witness(W_NAME, W_KEY, LOGS, tmp_path / "w.db", clock=Clock(1000))
    log.tick()
    status, ctype, body = w.add_checkpoint(log.request(0))
    assert (status, ctype) == (200, "text/plain; charset=utf-8")
    cp, ts = open_cosignature(log.store.last_checkpoint().note + body.decode(), W_NAME, W_KEY.public)
    assert (cp.size, ts) == (3, 1001)
    for _ in range(3):
        old = log.size
        log.tick(entries=5)
        assert w.add_checkpoint(log.request(old))[0] == 200
    assert w.recorded(ORIGIN) == (18, log.store.last_checkpoint().root)
    latest = w.latest(ORIGIN)
    w.close()

    w = Witness(W_NAME, W_KEY, LOGS, tmp_path / "w.db", clock=Clock(1000))  # restarted
    assert w.recorded(ORIGIN)[0] == 18 and w.latest(ORIGIN) == latest
    cp, ts = open_cosignature(latest, W_NAME, W_KEY.public)
    assert cp == open_checkpoint(latest, LOG_NAME, LOG_KEY.public) and cp.size == 18
    assert ts == 1004
    assert w.add_checkpoint(log.request(0))[:3] == (409, SIZE_CONTENT_TYPE, b"18\n")
    log.tick()
    status, _, body = w.add_checkpoint(log.request(18))
    assert status == 200
    # the restarted clock is behind the last cosignature: timestamps never go back
    assert open_cosignature(w.latest(ORIGIN), W_NAME, W_KEY.public)[1] == 1004
    # the same checkpoint again (old = new size, same root) is cosigned afresh
    assert w.add_checkpoint(log.request(21))[0] == 200
    log.tick(entries=0)  # a tick without entries: same tree, new extension lines
    assert w.add_checkpoint(log.request(21))[0] == 200
    assert open_cosignature(w.latest(ORIGIN), W_NAME, W_KEY.public)[0].tick == log.ticks
    w.close()
    with pytest.raises(ValueError, match="holds the state of witness"):
        Witness(W_NAME, SigningKey.from_seed(b"\x05" * 32), LOGS, tmp_path / "w.db")


def test_a_fork_signed_by_the_same_key_is_refused_and_the_first_log_kept(log, witness, tmp_path):
    fork = Log(tmp_path / "fork.db")
    for lg in (log, fork):
        lg.tick()
        lg.tick()
    assert log.store.last_checkpoint().root == fork.store.last_checkpoint().root  # shared history
    assert witness.add_checkpoint(log.request(0))[0] == 200
    log.tick()
    assert witness.add_checkpoint(log.request(6))[0] == 200
    cosigned = witness.latest(ORIGIN)

    fork.tick(variant="fork")  # same size as the cosigned tree, another root
    assert fork.size == log.size
    assert fork.store.last_checkpoint().root != log.store.last_checkpoint().root
    status, ctype, body = witness.add_checkpoint(fork.request(9))
    assert (status, ctype) == (409, "text/plain; charset=utf-8") and b"fork" in body
    fork.tick(variant="fork")  # larger: its proof from 9 cannot match the cosigned root
    status, _, body = witness.add_checkpoint(fork.request(9))
    assert status == 422 and b"does not verify" in body
    assert witness.latest(ORIGIN) == cosigned and witness.recorded(ORIGIN)[0] == 9
    assert [s for s, _, _ in witness.evidence(ORIGIN)] == [409, 422]  # kept: proof of misbehaviour
    log.tick()
    assert witness.add_checkpoint(log.request(9))[0] == 200  # the true log carries on
    fork.store.close()


def test_a_truncated_log_is_refused(log, witness, tmp_path):
    for _ in range(3):
        log.tick()
    assert witness.add_checkpoint(log.request(0))[0] == 200
    short = Log(tmp_path / "short.db")  # the same history, cut after two ticks, re-signed
    short.tick()
    short.tick()
    assert short.size == 6 < log.size == 9
    assert witness.add_checkpoint(short.request(6))[:3] == (409, SIZE_CONTENT_TYPE, b"9\n")
    assert witness.add_checkpoint(short.request(0))[:3] == (409, SIZE_CONTENT_TYPE, b"9\n")
    req = encode_add_checkpoint(short.store.last_checkpoint().note, 9, [])
    status, _, body = witness.add_checkpoint(req)  # old size above the checkpoint's: 400
    assert status == 400 and b"larger than the checkpoint size" in body
    assert witness.recorded(ORIGIN) == (9, log.store.last_checkpoint().root)
    short.store.close()


def test_unknown_origin_404_bad_log_signature_403_malformed_400(log, witness):
    note = log.tick()
    body = note.split("\n\n")[0] + "\n"
    other = Witness(W_NAME, W_KEY, {"elsewhere.test/log": (LOG_NAME, LOG_KEY.public)}, ":memory:")
    assert other.add_checkpoint(log.request(0))[0] == 404
    other.close()

    impostor = SigningKey.from_seed(b"\x03" * 32)
    forged = log.store.last_checkpoint()
    forged_note = Checkpoint(ORIGIN, forged.size, forged.root, 1, forged.state).sign(LOG_NAME, impostor)
    assert witness.add_checkpoint(encode_add_checkpoint(forged_note, 0, []))[0] == 403
    lines = note.split("\n")
    lines[4] = "state " + b64(b"\x00" * 32)  # altered under the log's signature
    assert witness.add_checkpoint(encode_add_checkpoint("\n".join(lines), 0, []))[0] == 403
    cosigned_only = body + "\n" + cosign(note, LOG_NAME, LOG_KEY, 1)  # a 0x04 sig is not a log sig
    assert witness.add_checkpoint(encode_add_checkpoint(cosigned_only, 0, []))[0] == 403

    h = b64(b"\x11" * 32)
    malformed = [
        b"", note.encode(), b"old 0\n" + note.encode(), b"new 0\n\n" + note.encode(),
        b"old 00\n\n" + note.encode(), b"old -1\n\n" + note.encode(), b"old 0 \n\n" + note.encode(),
        f"old 0\n{h[:-4]}\n\n{note}".encode(), f"old 0\nnot base64!\n\n{note}".encode(),
        ("old 0\n" + f"{h}\n" * 64 + "\n" + note).encode(),  # more than 63 proof lines
        f"old 0\n\n{body}".encode(),  # a note without signatures
        f"old 0\n\n{note.rstrip()}".encode(),  # without its final newline
        f"old 0\n\n{body}\n\u2014 {LOG_NAME}\n".encode(),  # a malformed signature line
        f"old 0\n\n{note}".encode().replace(b"tick", b"\xfftick"),  # not UTF-8
        f"old 0\n\n{note}".encode().replace(b"tick", b"\x07tick"),  # a control character
        f"old 0\n\n{note.replace(chr(10) + '3' + chr(10), chr(10) + '03' + chr(10))}".encode(),
    ]
    for req in malformed:
        status, _, msg = witness.add_checkpoint(req)
        assert status == 400, (req, status, msg)
    assert witness.add_checkpoint(b"x" * (witness.max_request_bytes + 1))[0] == 413
    assert witness.recorded(ORIGIN) is None  # nothing was cosigned
    assert witness.add_checkpoint(log.request(0))[0] == 200


def test_a_proof_for_a_first_checkpoint_or_between_equal_sizes_must_be_empty(log, witness):
    note = log.tick()
    junk = [b"\x22" * 32]
    assert witness.add_checkpoint(encode_add_checkpoint(note, 0, junk))[0] == 422
    assert witness.add_checkpoint(encode_add_checkpoint(note, 0, []))[0] == 200
    assert witness.add_checkpoint(encode_add_checkpoint(note, 3, junk))[0] == 422


def test_check_and_update_is_atomic_across_witnesses_sharing_a_state_file(log, tmp_path):
    a = Witness(W_NAME, W_KEY, LOGS, tmp_path / "w.db")
    b = Witness(W_NAME, W_KEY, LOGS, tmp_path / "w.db")
    log.tick()
    assert a.add_checkpoint(log.request(0))[0] == 200
    assert b.add_checkpoint(log.request(0))[:3] == (409, SIZE_CONTENT_TYPE, b"3\n")  # b sees a's write
    log.tick()
    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(w.add_checkpoint(log.request(3))[0]))
               for w in (a, b) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [409] * 7  # exactly one advance from size 3
    a.close()
    b.close()


# ---------------------------------------------------------------- HTTP app


def test_http_routes_status_codes_content_types_and_no_tracebacks(log, witness):
    client = TestClient(make_app(witness), raise_server_exceptions=False)
    assert client.get("/checkpoint", params={"origin": ORIGIN}).status_code == 404
    log.tick()
    r = client.post("/add-checkpoint", content=log.request(0))
    assert r.status_code == 200 and r.text.startswith("\u2014 " + W_NAME + " ")
    old = log.size
    log.tick()
    r = client.post("/add-checkpoint", content=log.request(0))
    assert (r.status_code, r.headers["content-type"], r.text) == (409, SIZE_CONTENT_TYPE, f"{old}\n")
    r = client.post("/add-checkpoint", content=b"old 0\n")
    assert r.status_code == 400 and "malformed" in r.text and r.headers["content-type"].startswith("text/")
    r = client.post("/add-checkpoint", content=b"x" * (witness.max_request_bytes + 1))
    assert r.status_code == 413
    assert client.get("/add-checkpoint").status_code == 405
    r = client.get("/checkpoint", params={"origin": ORIGIN})
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert open_cosignature(r.text, W_NAME, W_KEY.public)[0].size == old
    assert client.get("/checkpoint").status_code == 400
    status = client.get("/").json()
    assert status["vkey"] == witness_verifier_key(W_NAME, W_KEY.public)
    assert status["logs"] == [{"origin": ORIGIN, "keys": [verifier_key(LOG_NAME, LOG_KEY.public)],
                               "size": old, "cosigned": True}]

    def broken(origin):
        raise RuntimeError("secret internals")
    witness.latest = broken
    r = client.get("/checkpoint", params={"origin": ORIGIN})
    assert r.status_code == 500 and "Traceback" not in r.text and "secret" not in r.text


@pytest.fixture
def served(witness):
    """The witness's app served by uvicorn in a thread, for the httpx client."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(witness), host="127.0.0.1", port=port,
                                           log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(5)


def test_a_client_with_a_wrong_old_size_gets_409_and_retries_with_the_right_proof(log, served):
    log.tick()
    submit(served, log.store.last_checkpoint().note, 0, [])
    log.tick()
    log.tick()
    note = log.store.last_checkpoint().note
    with pytest.raises(WitnessRefused) as e:
        submit(served, note, 0, [])
    assert (e.value.status, e.value.recorded_size) == (409, 3)
    lines = submit(served, note, e.value.recorded_size, log.proof(e.value.recorded_size))
    assert open_cosignature(note + lines, W_NAME, W_KEY.public)[0].size == 9
    log.tick()
    lines = submit_synced(served, log.store.last_checkpoint().note, log.proof)  # from 0, then 9
    assert open_cosignature(fetch_latest(served, ORIGIN), W_NAME, W_KEY.public)[0].size == 12
    assert fetch_latest(served, "nobody.test/log") is None


# ---------------------------------------------------------------- a witness of its own


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url, proc=None, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"witness exited {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


def test_key_file_is_created_0600_and_bad_options_are_clear_value_errors(tmp_path):
    path = tmp_path / "w.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert bytes.fromhex(path.read_text().strip()) == key.seed_bytes()
    assert load_or_create_key(path).public == key.public  # kept, not replaced
    (tmp_path / "bad.key").write_text("not hex\n")
    (tmp_path / "a-file").write_text("not a folder")
    log_opt = f"{ORIGIN}={verifier_key(LOG_NAME, LOG_KEY.public)}"
    for key_file, logs, match in [
        (tmp_path / "bad.key", [log_opt], "64 hex characters"),
        (tmp_path, [log_opt], "the witness key file .* is a directory"),
        (tmp_path / "a-file" / "w.key", [log_opt], "cannot create the witness key file"),
        (path, ["no-equals-sign"], "ORIGIN=NAME"),
        (path, [f"{ORIGIN}=a+b+c"], "not a verifier key"),
        (path, [], "at least one --log"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_witness(key_file, tmp_path / "state.db", logs, W_NAME)
    with pytest.raises(ValueError, match="--name"):
        build_witness(path, tmp_path / "state.db", [log_opt], "has space")
    r = subprocess.run([sys.executable, "-m", "sandbank.audit.witness", "--key-file", str(path),
                        "--state", str(tmp_path / "s.db"), "--log", "bogus", "--name", W_NAME],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "ORIGIN=NAME+HASH+KEY" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def witness_process(tmp_path):
    port = free_port()
    key_file = tmp_path / "witness.key"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbank.audit.witness", "--key-file", str(key_file),
         "--state", str(tmp_path / "witness-state.db"),
         "--log", f"{ORIGIN}={verifier_key(LOG_NAME, LOG_KEY.public)}",
         "--host", "127.0.0.1", "--port", str(port), "--name", W_NAME],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc)
        vkey = proc.stdout.readline().strip()  # printed before serving
        yield url, vkey, key_file
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
        proc.stderr.close()


def test_a_witness_process_cosigns_a_log_tick_by_tick_and_refuses_fork_and_truncation(
        witness_process, log, tmp_path):
    url, vkey, key_file = witness_process
    name, public = parse_witness_key(vkey)
    assert (name, public) == (W_NAME, load_or_create_key(key_file).public)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600

    fork, short = Log(tmp_path / "fork.db"), Log(tmp_path / "short.db")
    recorded = 0
    for t in range(1, 6):
        note = log.tick(entries=t)
        for other in (fork, short):
            if t <= 3:
                other.tick(entries=t)  # the same history up to tick 3
        lines = submit(url, note, recorded, log.proof(recorded))
        cp, ts = open_cosignature(note + lines, name, public)
        assert cp.size == log.size and abs(ts - time.time()) < 120
        recorded = log.size

    fork.tick(entries=4, variant="fork")  # tick 4 of the same log, other entries, same key
    fork.tick(entries=5, variant="fork")
    assert fork.size == log.size and fork.store.last_checkpoint().root != log.store.last_checkpoint().root
    with pytest.raises(WitnessRefused) as e:
        submit(url, fork.store.last_checkpoint().note, recorded, [])
    assert e.value.status == 409 and e.value.recorded_size is None and "fork" in e.value.detail
    fork.tick(entries=2, variant="fork")
    with pytest.raises(WitnessRefused) as e:
        submit(url, fork.store.last_checkpoint().note, recorded, fork.proof(recorded))
    assert e.value.status == 422

    short_note = short.store.last_checkpoint().note  # a log cut back to tick 3, size 6 < 15
    with pytest.raises(WitnessRefused) as e:
        submit(url, short_note, short.size, [])
    assert (e.value.status, e.value.recorded_size) == (409, recorded)
    with pytest.raises(WitnessRefused) as again:  # retried from the recorded size
        submit(url, short_note, e.value.recorded_size, [])
    assert again.value.status == 400 and "larger than the checkpoint size" in again.value.detail

    latest = fetch_latest(url, ORIGIN)
    cp, ts = open_cosignature(latest, name, public)
    assert cp == open_checkpoint(latest, LOG_NAME, LOG_KEY.public)
    assert (cp.size, cp.root) == (log.size, log.store.last_checkpoint().root)
    status = httpx.get(url + "/").json()
    assert status["vkey"] == vkey and status["logs"][0]["size"] == log.size
    fork.store.close()
    short.store.close()
