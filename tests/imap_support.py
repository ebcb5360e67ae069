"""A private Dovecot IMAP server for the tests: its own config, sockets, users and Maildirs
in a temporary folder, plain IMAP and IMAPS (a self-signed certificate for 127.0.0.1) on
free loopback ports, logging to a file. Messages go in by IMAP APPEND, as a client puts them.

As root, mail is owned by ``nobody`` (Dovecot refuses mail access as root); otherwise
everything runs as the current user. Needs ``/usr/sbin/dovecot`` (apt-get install
dovecot-imapd); without it the tests using it are skipped."""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import free_port

DOVECOT = Path("/usr/sbin/dovecot")
HOST = "127.0.0.1"
ACCOUNTS = 100
#: services that chroot, besides anvil and imap-login: not possible without root
CHROOTED = ("aggregator", "imap-urlauth-login", "ipc", "old-stats")

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = digest-test-imap
protocols = imap
listen = {host}
log_path = {root}/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
default_internal_user = {internal_user}
{internal_group}default_login_user = {login_user}
first_valid_uid = 1
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_chars =
mail_location = maildir:~/Maildir
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service anvil {{  # no growing delay after a failed login: a test does one on purpose
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{chroot}}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
{chroot}}}
{rootless}"""


@dataclass
class Dovecot:
    root: Path
    port: int
    #: the IMAPS port and the certificate it shows, when openssl could make one
    tls_port: int | None
    cert: Path | None
    process: subprocess.Popen[bytes]
    #: users not handed out yet: Dovecot rereads a passwd-file at most once a second, so
    #: they are all written before it starts
    accounts: list[ImapAccount] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    def log(self, since: int = 0) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode("utf-8", "replace")
        return ""

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def add_account(self, *, non_ascii: bool = False) -> ImapAccount:
        """An unused user, with an empty mailbox; with ``non_ascii``, one whose user name
        and password have letters beyond ASCII."""
        for number, account in enumerate(self.accounts):
            if account.user.isascii() != non_ascii:
                return self.accounts.pop(number)
        pytest.fail(f"all {ACCOUNTS} users of the test Dovecot are used: raise ACCOUNTS")


@dataclass
class ImapAccount:
    server: Dovecot
    user: str
    password: str

    def url(self, mailbox: str = "INBOX", *, password: str | None = None, tls: bool = False) -> str:
        secret = quote(self.password if password is None else password, safe="")
        scheme, port = ("imaps", self.server.tls_port) if tls else ("imap", self.server.port)
        user = quote(self.user, safe="")
        return f"{scheme}://{user}:{secret}@{HOST}:{port}/{quote(mailbox)}"

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        client = imaplib.IMAP4(HOST, self.server.port, timeout=10)
        try:
            if self.user.isascii() and self.password.isascii():
                client.login(self.user, self.password)
            else:  # LOGIN takes only ASCII; PLAIN carries UTF-8 (RFC 4616)
                plain = f"\0{self.user}\0{self.password}".encode()
                client.authenticate("PLAIN", lambda _challenge: plain)
            yield client
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def create(self, mailbox: str) -> None:
        """``mailbox`` as sent on the wire (ASCII, modified UTF-7 for other letters)."""
        with self.client() as client:
            status, reply = client.create(f'"{mailbox}"')
            assert status == "OK", reply

    def append(self, raw: bytes, mailbox: str = "INBOX", *, seen: bool = False) -> None:
        with self.client() as client:
            flags = "(\\Seen)" if seen else None
            status, reply = client.append(f'"{mailbox}"', flags, None, raw)
            assert status == "OK", reply

    def uids(self, criterion: str = "ALL", mailbox: str = "INBOX") -> list[str]:
        """UIDs of the messages matching ``criterion`` (``ALL``, ``UNSEEN``, ``SEEN``...)."""
        with self.client() as client:
            status, reply = client.select(f'"{mailbox}"', readonly=True)
            assert status == "OK", reply
            status, found = client.uid("SEARCH", criterion)
            assert status == "OK", found
            return [uid.decode("ascii") for uid in (found[0] or b"").split()]


def _certificate(root: Path) -> Path | None:
    """A self-signed certificate for 127.0.0.1 (and its key) made by openssl, or None."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = root / "cert.pem", root / "key.pem"
    done = subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", f"/CN={HOST}"),
            *("-addext", f"subjectAltName=IP:{HOST}", "-keyout", str(key), "-out", str(cert)),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        ],
        capture_output=True,
        check=False,
    )
    return cert if done.returncode == 0 else None


def _write_users(root: Path, uid: int, gid: int) -> list[tuple[str, str]]:
    """The passwd-file: ACCOUNTS users, each with a home of its own for its Maildir; one
    in ten has a user name and password beyond ASCII."""
    accounts = []
    for number in range(ACCOUNTS):
        user = f"jürgen{number}" if number % 10 == 9 else f"user{number}"
        password = f"p@ss/{secrets.token_hex(6)}"  # characters the URL must percent-encode
        if not user.isascii():
            password = f"pässwört/{secrets.token_hex(6)}"
        accounts.append((user, password))
    lines = [f"{u}:{{PLAIN}}{p}:{uid}:{gid}::{root}/mail/{u}::\n" for u, p in accounts]
    (root / "users").write_text("".join(lines), encoding="utf-8")
    return accounts


def _users() -> tuple[int, int, str, str, str, str]:
    """uid and gid owning the mail, Dovecot's internal user and group lines, its login user
    and the ``chroot`` lines."""
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        internal = "dovecot" if _exists("dovecot") else "nobody"
        login = "dovenull" if _exists("dovenull") else "nobody"
        return nobody.pw_uid, nobody.pw_gid, internal, "", login, ""
    me = pwd.getpwuid(os.getuid())  # rootless: no chroot, every process as us
    group = f"default_internal_group = {grp.getgrgid(me.pw_gid).gr_name}\n"
    return me.pw_uid, me.pw_gid, me.pw_name, group, me.pw_name, "  chroot =\n"


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    """Start Dovecot in the foreground for as long as the ``with`` lasts."""
    if not DOVECOT.exists():
        pytest.skip("IMAP tests need Dovecot: apt-get install dovecot-imapd")
    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    try:
        uid, gid, internal, group, login, chroot = _users()
        root.chmod(0o755)  # the mail user (nobody) and Dovecot's users must get through
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir()
        if os.geteuid() == 0:
            os.chown(root / "mail", uid, gid)
        cert = _certificate(root)
        port, tls_port = free_port(), free_port()
        ssl = (
            f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{root / 'key.pem'}" if cert else "ssl = no"
        )
        config = root / "dovecot.conf"
        config.write_text(
            CONFIG.format(
                root=root,
                host=HOST,
                port=port,
                tls_port=tls_port if cert else 0,
                ssl=ssl,
                internal_user=internal,
                login_user=login,
                internal_group=group,
                chroot=chroot,
                rootless="".join(f"service {name} {{\n{chroot}}}\n" for name in CHROOTED)
                if chroot
                else "",
            ),
            encoding="utf-8",
        )
        accounts = _write_users(root, uid, gid)
        with (root / "dovecot.out").open("wb") as output:
            process = subprocess.Popen(
                [str(DOVECOT), "-c", str(config), "-F"], stdout=output, stderr=output
            )
        server = Dovecot(root, port, tls_port if cert else None, cert, process)
        server.accounts = [ImapAccount(server, user, password) for user, password in accounts]
        try:
            _wait_for(server)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(server: Dovecot) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((HOST, server.port), 0.5):
            return
        time.sleep(0.05)
    output = (server.root / "dovecot.out").read_text(encoding="utf-8", errors="replace")
    pytest.fail(
        f"Dovecot did not start on {HOST}:{server.port} (exit {server.process.poll()}):\n"
        f"{output}\n{server.log()}",
        pytrace=False,
    )
