"""`digest schedule` stops cleanly on SIGTERM or SIGINT whenever the signal comes.

Fifty real processes running the `digest schedule` command are each signalled after a random
delay once they said they are starting. To keep this fast, they are forked from one "zygote"
process that imported digest once (a cold import takes a second or two); one more run is a
plain `python -m digest schedule` subprocess.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digest.config import STARTER_CONFIG

RUNS = 50
AT_ONCE = 10
SIGNALS = (signal.SIGTERM, signal.SIGINT)
MAX_DELAY = 0.8  # seconds after "starting": covers settings, job store, start and idling

ZYGOTE = r"""
import logging, os, sys
from digest.cli.main import cli
for line in sys.stdin:
    verb, arg = line.split()
    if verb == "wait":
        _, status = os.waitpid(int(arg), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        os.chdir(arg)
        fd = os.open("log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            cli.main(["schedule"], prog_name="digest")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
"""


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}


def folder_with_config(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
    return folder


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def wait_for(path: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.005)
    pytest.fail(f"{path} never said {text!r}: {path.read_text() if path.exists() else ''}")


def test_a_signal_at_any_moment_after_start_stops_with_exit_0_and_says_so(
    tmp_path: Path,
) -> None:
    rng = random.Random(1515)
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert zygote.stdin is not None and zygote.stdout is not None
    outcomes: list[tuple[str, float, int, str]] = []
    try:
        for batch in range(RUNS // AT_ONCE):
            started: list[tuple[int, Path]] = []
            for n in range(AT_ONCE):
                folder = folder_with_config(tmp_path, f"run{batch * AT_ONCE + n}")
                zygote.stdin.write(f"fork {folder}\n")
                zygote.stdin.flush()
                started.append((int(zygote.stdout.readline()), folder))
            # each one is signalled at its own random moment after it said "starting"
            plan = [
                (pid, folder, rng.uniform(0, MAX_DELAY), rng.choice(SIGNALS))
                for pid, folder in started
            ]
            seen: dict[int, float] = {}
            signalled: set[int] = set()
            deadline = time.monotonic() + 30
            while len(signalled) < len(plan) and time.monotonic() < deadline:
                for pid, folder, delay, signum in plan:
                    if pid in signalled:
                        continue
                    if pid not in seen and "starting" in read(folder / "log.txt"):
                        seen[pid] = time.monotonic()
                    if pid in seen and time.monotonic() >= seen[pid] + delay:
                        os.kill(pid, signum)
                        signalled.add(pid)
                time.sleep(0.002)
            late = [pid for pid, *_ in plan if pid not in signalled]
            for pid in late:  # never left running: the wait below would block for ever
                os.kill(pid, signal.SIGKILL)
            assert not late, f"{len(late)} schedulers did not log 'starting' within 30 s"
            for pid, folder, delay, signum in plan:
                zygote.stdin.write(f"wait {pid}\n")
                zygote.stdin.flush()
                code = int(zygote.stdout.readline())
                outcomes.append((signum.name, delay, code, read(folder / "log.txt")))
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=10)
    assert len(outcomes) == RUNS
    assert {name for name, *_ in outcomes} == {"SIGTERM", "SIGINT"}
    for name, delay, code, log in outcomes:
        assert code == 0, f"{name} after {delay:.3f} s: exit {code}\n{log}"
        assert f"received {name}: stopping" in log, f"{name} after {delay:.3f} s:\n{log}"
        assert log.rstrip().endswith("digest scheduler stopped"), log
        assert "Traceback" not in log, log


def test_digest_schedule_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    folder = folder_with_config(tmp_path, "plain")
    with (folder / "log.txt").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest", "schedule"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
        try:
            wait_for(folder / "log.txt", "next edition run at")
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
    text = (folder / "log.txt").read_text()
    assert "digest scheduler started: mon 08:00" in text
    assert "received SIGTERM: stopping" in text
    assert text.rstrip().endswith("digest scheduler stopped")
