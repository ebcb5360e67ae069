"""A fast SMTP sink for throughput benchmarks, and a raw pipelined client to measure it.

The sink speaks just enough ESMTP for a sender (EHLO with PIPELINING and 8BITMIME, HELO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT), answers a pipelined group of commands in one write, and
finds the end of DATA with ``bytes.find`` on the incoming chunks (no per-line parsing). It
counts messages, bytes and distinct recipients and throws the data away. aiosmtpd saturates
its core at a few hundred messages/s (reference/performance.md), which would measure the
sink instead of the sender; this one takes well over 5,000 messages/s of 60 KB on one core.
It checks nothing a real MTA would: it only has to be out of the way.

Run it alone (Ctrl-C prints the counts)::

    python -m benchmarks.fastsink --port 2525

Measure its ceiling with the raw client (both in their own process)::

    python -m benchmarks.fastsink --selftest 20000 [--connections 4]

From a benchmark::

    with SinkProcess() as sink:
        ...send to 127.0.0.1:sink.port...
        report = sink.stop()   # SinkReport(messages=..., bytes=..., ...)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType

TERMINATOR = b"\r\n.\r\n"
EHLO_REPLY = b"250-fastsink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
OK = b"250 2.0.0 Ok\r\n"
QUEUED = b"250 2.0.0 Ok: queued\r\n"


@dataclass(frozen=True)
class SinkReport:
    """What the sink received; ``duplicates`` counts messages to an already seen recipient."""

    messages: int
    bytes: int
    recipients: int
    duplicates: int
    connections: int
    cpu_seconds: float


@dataclass
class Counts:
    messages: int = 0
    bytes: int = 0
    duplicates: int = 0
    connections: int = 0
    seen: set[bytes] = field(default_factory=set)

    def delivered(self, size: int, recipients: list[bytes]) -> None:
        self.messages += 1
        self.bytes += size
        for recipient in recipients:
            if recipient in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(recipient)

    def report(self) -> SinkReport:
        return SinkReport(
            self.messages,
            self.bytes,
            len(self.seen),
            self.duplicates,
            self.connections,
            time.process_time(),
        )


def _address(line: bytes) -> bytes:
    start = line.find(b"<")
    end = line.find(b">", start + 1)
    return line[start + 1 : end] if 0 <= start < end else line[8:].strip()


class SinkProtocol(asyncio.Protocol):
    """One SMTP connection. Commands are split on CRLF from a small buffer; message data is
    never buffered: only the last 4 bytes are kept, to find a terminator split by a read."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.commands = bytearray()
        self.in_data = False
        self.tail = b""  # the last bytes of data seen, at most 4
        self.size = 0  # bytes of the current message so far
        self.has_sender = False
        self.recipients: list[bytes] = []
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.counts.connections += 1
        transport.write(b"220 fastsink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        replies = bytearray()
        while data and not self.closing:
            if self.in_data:
                data = self._feed_data(data, replies)
            else:
                data = self._feed_commands(data, replies)
        assert self.transport is not None
        if replies:
            self.transport.write(bytes(replies))
        if self.closing:
            self.transport.close()

    def _feed_commands(self, data: bytes, replies: bytearray) -> bytes:
        """Answer every complete command; returns the bytes after a DATA command."""
        self.commands += data
        while not self.closing:
            end = self.commands.find(b"\r\n")
            if end < 0:
                return b""
            line = bytes(self.commands[:end])
            del self.commands[: end + 2]
            replies += self._command(line)
            if self.in_data:
                rest = bytes(self.commands)
                self.commands.clear()
                return rest
        return b""

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._reset()
            return EHLO_REPLY
        if verb == b"HELO":
            self._reset()
            return b"250 fastsink\r\n"
        if verb == b"MAIL":
            self._reset()
            self.has_sender = True
            return OK
        if verb == b"RCPT":
            if not self.has_sender:
                return b"503 5.5.1 MAIL first\r\n"
            self.recipients.append(_address(line))
            return OK
        if verb == b"DATA":
            if not self.recipients:
                return b"503 5.5.1 RCPT first\r\n"
            self.in_data, self.tail, self.size = True, b"\r\n", 0  # data starts a line
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RSET":
            self._reset()
            return OK
        if verb == b"NOOP":
            return OK
        if verb == b"QUIT":
            self.closing = True
            return b"221 2.0.0 Bye\r\n"
        return b"500 5.5.2 Command not recognised\r\n"

    def _feed_data(self, data: bytes, replies: bytearray) -> bytes:
        """Count message bytes up to CRLF.CRLF; returns the bytes after it."""
        tail = self.tail
        across = (tail + data[:4]).find(TERMINATOR)  # a terminator split between reads
        if across >= 0:
            used = across + 5 - len(tail)
        else:
            found = data.find(TERMINATOR)
            if found < 0:
                self.size += len(data)
                self.tail = data[-4:] if len(data) >= 4 else (tail + data)[-4:]
                return b""
            used = found + 5
        self.size += used
        self.counts.delivered(self.size - 3, self.recipients)  # without the ".\r\n" line
        replies += QUEUED
        self.in_data = False
        self._reset()
        return data[used:]

    def _reset(self) -> None:
        self.has_sender = False
        self.recipients = []


async def serve(counts: Counts, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SinkProtocol(counts), host, port)


def bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


# ---------------------------------------------------------------- the sink in its own process


async def _serve_until_told(host: str, conn: Connection) -> None:
    counts = Counts()
    server = await serve(counts, host)
    conn.send(bound_port(server))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    server.close()
    conn.send(counts.report())


def _sink_main(host: str, conn: Connection) -> None:
    asyncio.run(_serve_until_told(host, conn))


class SinkProcess:
    """The sink in a process of its own (spawned), on a free port of ``host``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.report: SinkReport | None = None
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_sink_main, args=(host, child), daemon=True)
        self._child = child

    def __enter__(self) -> SinkProcess:
        self._process.start()
        self._child.close()
        self.port = self._conn.recv()
        return self

    def stop(self) -> SinkReport:
        """Stop the sink and return its counts (call it once every sender is done)."""
        if self.report is None:
            self._conn.send("stop")
            self.report = self._conn.recv()
            self._process.join(timeout=10)
        return self.report

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.report is None and self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)
        self._conn.close()


# ---------------------------------------------------------------- a raw pipelined client


class SmtpReplyError(RuntimeError):
    pass


class _Replies:
    """Reads final reply lines (``250 ...``, not ``250-...``) from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def expect(self, *codes: bytes) -> None:
        for code in codes:
            line = self._final_line()
            if not line.startswith(code):
                raise SmtpReplyError(f"expected {code.decode()}, got {line!r}")

    def _final_line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            while end < 0:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the SMTP server closed the connection")
                self.buffer += chunk
                end = self.buffer.find(b"\r\n")
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            if line[3:4] != b"-":
                return line


def _envelope(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


def _content(message: bytes) -> bytes:
    if message.startswith(b".") or b"\r\n." in message:  # dot-stuffing (RFC 5321 §4.5.2)
        message = message.replace(b"\r\n.", b"\r\n..")
        message = b"." + message if message.startswith(b".") else message
    return message + (b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n")


def pipelined_push(
    host: str, port: int, sender: str, messages: Sequence[tuple[str, bytes]]
) -> float:
    """Send ``(recipient, bytes)`` pairs on one connection, one round trip per message
    (content, then the next MAIL/RCPT/DATA, in one write: RFC 2920). Returns seconds."""
    started = time.perf_counter()
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        replies = _Replies(sock)
        replies.expect(b"220")
        sock.sendall(b"EHLO bench.example\r\n")
        replies.expect(b"250")
        if messages:
            sock.sendall(_envelope(sender, messages[0][0]))
            replies.expect(b"250", b"250", b"354")
        for index, (_, message) in enumerate(messages):
            last = index + 1 == len(messages)
            after = b"QUIT\r\n" if last else _envelope(sender, messages[index + 1][0])
            sock.sendall(_content(message) + after)
            replies.expect(b"250", *((b"221",) if last else (b"250", b"250", b"354")))
    return time.perf_counter() - started


def parallel_push(
    host: str, port: int, sender: str, messages: Sequence[tuple[str, bytes]], connections: int
) -> float:
    """Send ``(recipient, bytes)`` pairs over ``connections`` connections at once, as
    :func:`pipelined_push` does on each (one thread each; connection *n* takes every
    ``connections``-th message from the *n*-th). Returns seconds until the last is done."""
    if connections <= 1:
        return pipelined_push(host, port, sender, messages)
    shares = [messages[n::connections] for n in range(connections)]
    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        for _ in pool.map(lambda share: pipelined_push(host, port, sender, share), shares):
            pass  # re-raises a connection's error
    return time.perf_counter() - started


# ---------------------------------------------------------------- command line


def _synthetic(count: int, size: int) -> list[tuple[str, bytes]]:
    line = b"x" * 74 + b"\r\n"
    body = b"Subject: sink self-test\r\n\r\n" + line * (size // len(line))
    return [(f"reader{i}@example.net", body) for i in range(count)]


def selftest(count: int, size: int, connections: int = 1) -> None:
    messages = _synthetic(count, size)
    with SinkProcess() as sink:
        seconds = parallel_push("127.0.0.1", sink.port, "bench@example.org", messages, connections)
        report = sink.stop()
    ok = report.messages == count and report.duplicates == 0
    print(
        f"{count:,} messages of {size / 1000:.0f} KB on {connections} connection(s) in "
        f"{seconds:.2f} s: "
        f"{count / seconds:,.0f} msg/s, {report.bytes / seconds / 1e6:.0f} MB/s; "
        f"sink CPU {report.cpu_seconds:.2f} s; counts {'match' if ok else 'DO NOT MATCH'}"
    )


async def _serve_forever(host: str, port: int) -> Counts:
    counts = Counts()
    server = await serve(counts, host, port)
    print(f"fastsink listening on {host}:{bound_port(server)} (Ctrl-C to stop)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument(
        "--selftest", type=int, metavar="N", help="push N synthetic messages and print the rate"
    )
    parser.add_argument("--size", type=int, default=60_000, help="self-test message size")
    parser.add_argument(
        "--connections", type=int, default=1, help="self-test connections (one thread each)"
    )
    args = parser.parse_args(argv)
    if args.selftest:
        selftest(args.selftest, args.size, args.connections)
        return
    report = asyncio.run(_serve_forever(args.host, args.port)).report()
    print(report)


if __name__ == "__main__":
    main()
