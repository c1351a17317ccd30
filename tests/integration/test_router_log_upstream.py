"""The prediction log on a real temporary directory (hourly and exact size rotation, lines serialised in
another process, write failures), and the upstream client against real servers on 127.0.0.1 that write raw
HTTP bytes: chunked and split answers, answers that end at the close, interim answers, closes mid-answer,
silence, 5xx, stale keep-alive connections, and https with a CA of the test's own."""
from __future__ import annotations

import asyncio
import datetime as dt
import errno
import ipaddress
import json
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings, strategies as st

from router.predlog import PredictionLog
from router.upstream import Upstreams

ROOT = Path(__file__).resolve().parents[2]
NOON = dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc).timestamp()


# --- prediction log ----------------------------------------------------------------------------------


def _file_records(path: Path) -> list[int]:
    return [orjson.loads(line)["i"] for line in path.read_bytes().splitlines()]


def test_prediction_log_rotates_at_the_hour_and_keeps_every_record(tmp_path):
    """Records flushed before and after an hour boundary land in files of both hours (sequence numbers start
    again at 0000 in the new hour, size rotation still holds), each file in write order, none lost; a restarted
    replica in the same hour starts a new file instead of appending to an old one."""
    nine = dt.datetime(2024, 3, 1, 9, tzinfo=dt.timezone.utc).timestamp()
    now = [nine + 3599.5]                                      # 09:59:59.5

    async def run(log: PredictionLog, start: int, stop: int, hour_at: int | None = None) -> None:
        for i in range(start, stop):
            log.write({"i": i, "role": "primary", "output": i / 7})
            if i % 61 == 0:
                await log.flush()
            if i == hour_at:
                now[0] = nine + 3600.0                           # 10:00:00
        await log.close()

    log = PredictionLog(tmp_path, "replica-1", max_bytes=3000, clock=lambda: now[0])
    asyncio.run(run(log, 0, 400, hour_at=200))
    assert log.written == 400 and log.dropped == 0

    files = sorted(tmp_path.glob("predictions-replica-1-*.jsonl"))
    nine_files = [f for f in files if "-20240301T09-" in f.name]
    ten_files = [f for f in files if "-20240301T10-" in f.name]
    assert len(nine_files) + len(ten_files) == len(files), [f.name for f in files]
    assert len(nine_files) > 1 and len(ten_files) > 1, [f.name for f in files]
    assert ten_files[0].name == "predictions-replica-1-20240301T10-0000.jsonl"
    assert all(f.stat().st_size <= 3000 for f in files), {f.name: f.stat().st_size for f in files}
    for f in files:
        got = _file_records(f)
        assert got == list(range(got[0], got[0] + len(got))), f"{f.name} is out of order: {got}"
    in_nine = [i for f in nine_files for i in _file_records(f)]
    in_ten = [i for f in ten_files for i in _file_records(f)]
    # The hour is read once per flush: the last flush before 10:00 wrote up to i == 183, the next (at i == 244)
    # is the first in the new hour.
    assert in_nine == list(range(0, 184)) and in_ten == list(range(184, 400))
    assert _logged_i(tmp_path) == list(range(400))

    before = {f.name: f.read_bytes() for f in files}
    again = PredictionLog(tmp_path, "replica-1", max_bytes=3000, clock=lambda: now[0])
    asyncio.run(run(again, 400, 410))
    new = sorted(set(f.name for f in tmp_path.glob("*.jsonl")) - set(before))
    assert new == [f"predictions-replica-1-20240301T10-{len(ten_files):04d}.jsonl"]
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert _logged_i(tmp_path) == list(range(410))


@settings(max_examples=100, deadline=None)
@example(sizes=[100] * 60, flush_every=1000, max_bytes=1000, chunk=3, piece_bytes=200)   # pieces within files
@example(sizes=[10, 900, 10, 10], flush_every=1, max_bytes=300, chunk=2, piece_bytes=5000)  # a line > max_bytes
@given(sizes=st.lists(st.integers(0, 400), min_size=1, max_size=300), flush_every=st.integers(1, 300),
       max_bytes=st.integers(50, 5000), chunk=st.integers(1, 40), piece_bytes=st.integers(1, 5000))
def test_prediction_log_files_hold_exactly_what_line_by_line_rotation_gives(tmp_path_factory, sizes, flush_every,
                                                                            max_bytes, chunk, piece_bytes):
    """Whatever the record sizes, flush points, records serialised per step (`chunk`) and size of the byte
    strings joined per write (`piece_bytes`), the files are exactly those of appending line by line and
    rotating before a line that would take a non-empty file past `max_bytes` (so only a single longer line
    makes a file larger)."""
    directory = tmp_path_factory.mktemp("log")
    records = [{"i": i, "pad": "z" * n} for i, n in enumerate(sizes)]
    expected: list[list[int]] = [[]]
    size = 0
    for r in records:
        n = len(orjson.dumps(r)) + 1
        if size and size + n > max_bytes:
            expected.append([])
            size = 0
        expected[-1].append(r["i"])
        size += n

    async def run():
        log = PredictionLog(directory, "p", max_bytes=max_bytes, chunk=chunk, piece_bytes=piece_bytes,
                            clock=lambda: NOON)                      # no hour boundary mid-test
        for r in records:
            log.write(r)
            if r["i"] % flush_every == 0:
                await log.flush()
        await log.close()
        return log
    log = asyncio.run(run())
    files = sorted(directory.glob("predictions-p-*.jsonl"))
    assert [_file_records(f) for f in files] == expected
    assert log.written == len(records) and log.dropped == 0


def test_prediction_log_counts_a_failed_write_and_leaves_only_whole_lines(tmp_path):
    """A write the file system refuses (here: the file size limit, RLIMIT_FSIZE, in a child process) raises,
    counts the flush's records as dropped, cuts the torn line off the file and the next flush writes to a
    new file: every line on disk still parses and no record is counted twice."""
    script = textwrap.dedent("""
        import asyncio, json, resource, signal, sys
        from router.predlog import PredictionLog

        async def main(directory):
            log = PredictionLog(directory, "r", max_bytes=1 << 20, clock=lambda: %r)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)        # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (8000, resource.RLIM_INFINITY))
            for i in range(40):
                log.write({"i": i, "pad": "x" * 80})
            await log.flush()
            for i in range(40, 120):
                log.write({"i": i, "pad": "x" * 80})
            failed = None
            try:
                await log.flush()
            except OSError as e:
                failed = e.errno
            for i in range(120, 140):
                log.write({"i": i, "pad": "x" * 80})
            await log.close()
            print(json.dumps({"errno": failed, "written": log.written, "dropped": log.dropped}))

        asyncio.run(main(sys.argv[1]))
    """) % NOON
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == {"errno": errno.EFBIG, "written": 60, "dropped": 80}, (result, done.stderr)
    assert "80 of 80 records of this flush dropped" in done.stderr
    files = sorted(tmp_path.glob("predictions-r-*.jsonl"))
    assert len(files) == 2, [f.name for f in files]
    assert _logged_i(tmp_path) == list(range(40)) + list(range(120, 140))
    assert all(f.read_bytes().endswith(b"\n") for f in files)


# --- upstream client against raw servers ---------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one request; body by Content-Length, which is what the client sends."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


def answer(status: int, body: bytes, *extra: bytes) -> bytes:
    """An HTTP/1.1 answer with Content-Type and Content-Length (and `extra` header lines)."""
    head = [b"HTTP/1.1 %d Whatever" % status, b"Content-Type: application/json",
            b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class RawServer:
    """asyncio.start_server on a free 127.0.0.1 port running `handle(server, reader, writer, n)` for the n-th
    connection (from 1) and closing the connection when it returns; `read(reader, n)` reads a request and
    records it in `requests` as (n, head, body)."""

    def __init__(self, handle, tls: ssl.SSLContext | None = None):
        self.handle = handle
        self.tls = tls
        self.connections = 0
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.release = asyncio.Event()
        """Set when the test is done: handlers that wait for it (silent servers) end."""
        self._open: dict[asyncio.Task, asyncio.StreamWriter] = {}

    async def read(self, reader: asyncio.StreamReader, n: int) -> bytes:
        head, body = await read_request(reader)
        self.requests.append((n, head, body))
        return body

    async def __aenter__(self) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        self._open[task] = writer
        try:
            await self.handle(self, reader, writer, self.connections)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass                                # the client went away: nothing more to answer
        finally:
            writer.close()
            del self._open[task]

    async def __aexit__(self, *exc) -> None:
        """Stop listening, close every open connection and wait for every handler to end."""
        self.release.set()
        self.server.close()
        for writer in self._open.values():
            writer.close()
        await asyncio.gather(*self._open, return_exceptions=True)
        await self.server.wait_closed()


def serve(handle, test, tls: ssl.SSLContext | None = None) -> None:
    """Run `await test(server)` with a RawServer running `handle` and a fresh Upstreams as `server.up`."""
    async def run():
        async with RawServer(handle, tls) as server:
            server.up = Upstreams()
            try:
                await test(server)
            finally:
                await server.up.close()
    asyncio.run(run())


async def write_in_pieces(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    """Write `data` `size` bytes at a time, letting the loop run in between, so the client reads it in pieces."""
    for i in range(0, len(data), size):
        writer.write(data[i:i + size])
        await writer.drain()
        await asyncio.sleep(0.002)


async def answer_each(server: RawServer, reader, writer, n: int) -> None:
    """A plain keep-alive server: every request gets a 200 whose body is the request's body."""
    while True:
        body = await server.read(reader, n)
        writer.write(answer(200, body))
        await writer.drain()


PAYLOAD = json.dumps({"prediction": 0.25, "version": "v2", "pad": "y" * 300}).encode()


def test_answer_split_over_many_tcp_writes_is_reassembled():
    """Status line, headers and body cut into 7-byte writes arrive whole; the request carries the base URL's
    path prefix, Host, Content-Length, the given headers and the body."""
    async def handle(server, reader, writer, n):
        await server.read(reader, n)
        await write_in_pieces(writer, answer(200, PAYLOAD), 7)
        await server.release.wait()

    async def test(s):
        a = await s.up.call(s.url + "/models/m1/", "/predict", b'{"features": {}}', {"x-user-id": "u7"}, 10.0)
        assert (a.status, a.error, a.body, a.content_type) == (200, None, PAYLOAD, "application/json"), a
        [(_, head, body)] = s.requests
        port = s.url.rsplit(":", 1)[1]
        assert head.startswith(b"POST /models/m1/predict HTTP/1.1\r\n"), head
        assert f"Host: 127.0.0.1:{port}\r\n".encode() in head and b"x-user-id: u7\r\n" in head, head
        assert b"Content-Length: 16\r\n" in head and body == b'{"features": {}}'
    serve(handle, test)


def test_chunked_answer_is_reassembled_and_the_connection_reused():
    """A Transfer-Encoding: chunked answer, its chunks (with an extension and a trailer) split across writes,
    arrives whole; the next call reuses the connection, so the client read exactly to the end of it."""
    parts = [PAYLOAD[:100], PAYLOAD[100:101], PAYLOAD[101:]]

    async def handle(server, reader, writer, n):
        while True:
            await server.read(reader, n)
            data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                    + b"".join(b"%x;note=1\r\n%s\r\n" % (len(p), p) for p in parts)
                    + b"0\r\nX-Trailer: done\r\n\r\n")
            await write_in_pieces(writer, data, 11)

    async def test(s):
        first = await s.up.call(s.url, "/predict", b"{}", {}, 10.0)
        second = await s.up.call(s.url, "/predict", b"[]", {}, 10.0)
        for a in (first, second):
            assert (a.status, a.error, a.body) == (200, None, PAYLOAD), a
        assert s.connections == 1
        assert [(n, body) for n, _, body in s.requests] == [(1, b"{}"), (1, b"[]")]
    serve(handle, test)


def test_answer_without_length_ends_at_the_close():
    """An answer with neither Content-Length nor chunks (an HTTP/1.0-style server) is whole when the server
    closes; the closed connection is not reused."""
    async def handle(server, reader, writer, n):
        await server.read(reader, n)
        await write_in_pieces(writer, b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + PAYLOAD, 50)

    async def test(s):
        for _ in range(2):
            a = await s.up.call(s.url, "/predict", b"{}", {}, 10.0)
            assert (a.status, a.error, a.body) == (200, None, PAYLOAD), a
        assert s.connections == 2
    serve(handle, test)


def test_interim_answer_is_skipped():
    """A 100 Continue (or 103 Early Hints) before the answer is not taken for the answer."""
    async def handle(server, reader, writer, n):
        while True:
            await server.read(reader, n)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.002)
            writer.write(answer(201, PAYLOAD))

    async def test(s):
        for _ in range(2):
            a = await s.up.call(s.url, "/predict", b"{}", {}, 10.0)
            assert (a.status, a.error, a.body) == (201, None, PAYLOAD), a
        assert s.connections == 1
    serve(handle, test)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_close_mid_answer_is_unreachable(framing):
    """A server that closes after part of the answer gives "unreachable" (no status, no body), and the
    request is not sent again: it may have been processed."""
    async def handle(server, reader, writer, n):
        await server.read(reader, n)
        if framing == "chunked":
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n" + PAYLOAD[:20])
        else:
            writer.write(answer(200, PAYLOAD)[:-20])

    async def test(s):
        a = await s.up.call(s.url, "/predict", b"{}", {}, 10.0)
        assert (a.status, a.error, a.body) == (None, "unreachable", b""), a
        assert a.detail == f"is unreachable at {s.url}: connection closed", a.detail
        assert len(s.requests) == 1
    serve(handle, test)


def test_silent_server_times_out_and_its_late_answer_is_never_taken_for_the_next_one():
    """A server that never answers within the timeout gives "timeout"; its late answer on that connection
    must not become the answer to the next call, which gets a fresh connection."""
    timed_out = asyncio.Event()

    async def handle(server, reader, writer, n):
        while True:
            body = await server.read(reader, n)
            if body == b"slow":
                await timed_out.wait()
                writer.write(answer(200, b'"late"'))
            else:
                writer.write(answer(200, b'"fresh"'))
            await writer.drain()

    async def test(s):
        a = await asyncio.wait_for(s.up.call(s.url, "/predict", b"slow", {}, 0.3), 60)
        assert (a.status, a.error, a.body) == (None, "timeout", b""), a
        assert a.detail == "gave no answer within 0.3s"
        assert [body for _, _, body in s.requests] == [b"slow"]
        timed_out.set()
        b = await s.up.call(s.url, "/predict", b"next", {}, 10.0)
        assert (b.status, b.error, b.body) == (200, None, b'"fresh"'), b
        assert [(n, body) for n, _, body in s.requests] == [(1, b"slow"), (2, b"next")]
    serve(handle, test)


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_http_5xx_with_its_body(status):
    """A 5xx answer is an "http_5xx" error that keeps its status and body; the connection stays usable."""
    async def handle(server, reader, writer, n):
        while True:
            body = await server.read(reader, n)
            writer.write(answer(status if body == b"fail" else 200, b'{"error": "overloaded"}'))
            await writer.drain()

    async def test(s):
        a = await s.up.call(s.url, "/predict", b"fail", {}, 10.0)
        assert (a.status, a.error, a.body) == (status, "http_5xx", b'{"error": "overloaded"}'), a
        assert a.detail == f"answered HTTP {status}"
        b = await s.up.call(s.url, "/predict", b"ok", {}, 10.0)
        assert (b.status, b.error) == (200, None), b
        assert s.connections == 1
    serve(handle, test)


def test_reused_connection_closed_by_the_server_is_retried_once_on_a_fresh_one():
    """The server closes an idle keep-alive connection just as the client reuses it (reads the request,
    answers nothing): the client sends the request once more on a new connection and gets its answer."""
    async def handle(server, reader, writer, n):
        if n == 1:
            await server.read(reader, n)
            writer.write(answer(200, b'"first"'))
            await writer.drain()
            await server.read(reader, n)        # the reuse arrives here; the server closes without answering
            return
        await answer_each(server, reader, writer, n)

    async def test(s):
        a = await s.up.call(s.url, "/predict", b"a", {}, 10.0)
        assert (a.status, a.body) == (200, b'"first"'), a
        b = await s.up.call(s.url, "/predict", b"b", {}, 10.0)
        assert (b.status, b.error, b.body) == (200, None, b"b"), b
        assert [(n, body) for n, _, body in s.requests] == [(1, b"a"), (1, b"b"), (2, b"b")]
        c = await s.up.call(s.url, "/predict", b"c", {}, 10.0)
        assert (c.status, c.body) == (200, b"c") and s.connections == 2
    serve(handle, test)


def test_reused_connection_closed_after_part_of_the_answer_is_not_retried():
    """The once-more is only for a request the server cannot have seen answered: a reused connection that
    closes after part of the answer gives "unreachable" and no second request."""
    async def handle(server, reader, writer, n):
        await server.read(reader, n)
        writer.write(answer(200, b'"first"'))
        await writer.drain()
        await server.read(reader, n)
        writer.write(answer(200, PAYLOAD)[:60])

    async def test(s):
        a = await s.up.call(s.url, "/predict", b"a", {}, 10.0)
        assert a.status == 200, a
        b = await s.up.call(s.url, "/predict", b"b", {}, 10.0)
        assert (b.status, b.error) == (None, "unreachable"), b
        assert [(n, body) for n, _, body in s.requests] == [(1, b"a"), (1, b"b")]
    serve(handle, test)


# --- https ---------------------------------------------------------------------------------------------


def _make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate it signed for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelrollout test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "model-v2")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_https_upstream_is_refused_without_its_ca_and_answers_with_it(tmp_path):
    """An https model whose certificate a private CA signed: refused ("unreachable", certificate verification
    failed) by the system CAs alone, answered (keep-alive over TLS) when Upstreams trusts the CA file."""
    ca, cert, key = _make_ca_and_server_cert(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)

    async def test(s):
        refused = await s.up.call(s.url, "/predict", b"{}", {}, 10.0)
        assert (refused.status, refused.error) == (None, "unreachable"), refused
        assert refused.detail.startswith(f"is unreachable at {s.url}: TLS certificate verification failed: "), \
            refused.detail
        assert s.requests == []
        trusting = Upstreams(ca_file=ca)
        try:
            for body in (b'{"a": 1}', b'{"a": 2}'):
                a = await trusting.call(s.url, "/predict", body, {}, 10.0)
                assert (a.status, a.error, a.body) == (200, None, body), a
        finally:
            await trusting.close()
        assert [body for _, _, body in s.requests] == [b'{"a": 1}', b'{"a": 2}']
        assert s.connections == 1       # one kept-alive TLS connection; the refused one never passed the handshake
    serve(answer_each, test, tls)


def test_unreadable_ca_file_is_refused_at_construction_naming_it(tmp_path):
    missing = tmp_path / "no-such-ca.pem"
    with pytest.raises(ValueError, match=f"upstream CA file '{missing}': cannot load CA certificates"):
        Upstreams(ca_file=missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"upstream CA file '{junk}': cannot load CA certificates"):
        Upstreams(ca_file=junk)


def _logged_i(directory) -> list:
    """The "i" of every line of a log directory's files in name order (these tests log plain dicts)."""
    import orjson
    from pathlib import Path

    return [orjson.loads(line)["i"] for f in sorted(Path(directory).glob("predictions-*.jsonl"))
            for line in f.read_bytes().splitlines() if line.strip()]


def test_read_log_parses_every_file_sorts_by_time_and_names_a_bad_line(tmp_path):
    """`read_log` (the one reader of prediction logs): a directory's files, lines of before the `v` field and
    of now, sorted by time; a bad line stops it naming the file and line; a directory without logs is an
    error."""
    import pytest

    from policies.outcome import Outcome
    from router.predlog import LogError, read_log

    new = Outcome.answer(3.0, "b", "r", "ns", "rev", "v1", "baseline", "primary", 200, None, 1.0, 0.4, None, None)
    old = b'{"time": 1.0, "request_id": "a", "rollout": "r", "namespace": "ns", "revision": "rev", "version": "v1",' \
          b' "arm": "baseline", "role": "primary", "status": 200, "error": null, "latency_ms": 1.0, "output": 0.1,' \
          b' "features": null, "segments": null}\n'
    (tmp_path / "predictions-r-20240301T10-0000.jsonl").write_bytes(new.to_json() + b"\n\n")
    (tmp_path / "predictions-r-20240301T10-0001.jsonl").write_bytes(old)
    records = read_log([tmp_path])
    assert [r.request_id for r in records] == ["a", "b"] and records[1] == new
    bad = tmp_path / "predictions-r-20240301T10-0002.jsonl"
    bad.write_bytes(old + b'{"time": "noon"}\n')
    with pytest.raises(LogError, match=f"{bad}:2: time: expected epoch seconds"):
        read_log([tmp_path])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LogError, match="no predictions-"):
        read_log([empty])
