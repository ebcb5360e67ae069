"""`digest admin` and `digest preview --serve` as an admin runs them: each starts the
console on 127.0.0.1 and says where; its pages answer (a real process, a real socket)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port


def started(folder: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env["DIGEST_NOW"] = "2026-11-23T08:00:00+00:00"
    process = subprocess.Popen(
        [sys.executable, "-m", "digest", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()  # the line that says where it listens
    return process, first


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (("admin",), ""),
        (("preview", "--serve"), "The preview server is now the admin console (`digest admin`).\n"),
    ],
    ids=["digest admin", "digest preview --serve"],
)
def test_the_command_serves_the_console_on_loopback(
    tmp_path: Path, command: tuple[str, ...], said: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    subprocess.run(
        [sys.executable, "-m", "digest", "init"], cwd=tmp_path, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    port = free_port()
    process, first = started(tmp_path, *command, "--port", str(port))
    try:
        if said:
            assert first == said
            assert process.stdout is not None
            first = process.stdout.readline()
        url = f"http://127.0.0.1:{port}/admin/"
        assert first == f"Admin console on {url} (Ctrl-C stops it).\n"
        for _ in range(100):
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    page = answer.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert "<h1>This week: edition 2026-W48</h1>" in page
    finally:
        process.terminate()
        process.wait(10)
