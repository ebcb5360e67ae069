"""DKIM signing cost per message: RSA-2048 and ed25519 on a 60 KB digest.

Run: ``.venv/bin/python benchmarks/dkim_sign.py [--count 300]``

Prints the median microseconds per signature for each key type and the ratio to the baseline
measured in the same run: personalising the same message template (the per-message work
digest already does without DKIM). Keys are generated with the ``openssl`` command, as an
operator would. There is no timing target; the figure decides where signing is called
(once per message, after personalising, on the bytes handed to the transport).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dkim

from digest.config import STARTER_CONFIG, load_settings
from digest.mail.dkim import DkimKey, DkimSigner
from digest.mail.message import Recipient, build_template, new_placeholder
from digest.planning.ids import new_message_id
from digest.render.renderer import Rendered
from subscribers.tokens import new_token

TARGET_BYTES = 60_000


def median_us(work: Callable[[], object], count: int) -> float:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="signatures per key type")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "digest.toml").write_text(STARTER_CONFIG, encoding="utf-8")
        settings = load_settings(tmp / "digest.toml", env={})
        placeholder = new_placeholder()
        card = (
            '<tr><td style="padding:12px"><h2>A new summary about spinal cord injury</h2>'
            "<p>Researchers report a result that matters to readers; plain words, one idea "
            "per sentence, and a link to the full summary on the site.</p></td></tr>\n"
        )
        link = f"{settings.base_url}/u/{placeholder}"
        html = f'<html lang="en"><table>{card * (TARGET_BYTES * 72 // 100 // len(card))}</table>'
        html += f'<a href="{link}">Unsubscribe</a></html>'
        text = ("A new summary about spinal cord injury.\n" * 40) + f"Unsubscribe: {link}\n"
        template = build_template(
            settings,
            Rendered("5 new summaries", html, text),
            placeholder=placeholder,
            date=dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC),
        )
        recipient = Recipient(
            "reader@example.net", "A Reader", new_token(), new_message_id("bench", "example.org")
        )
        raw = template.personalize(recipient)

        keys = {
            "RSA-2048": (["genrsa", "-out", "rsa.pem", "2048"], "rsa.pem", "rsa-sha256"),
            "ed25519": (["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"], "ed.pem", ""),
        }
        print(f"message: {len(raw)} bytes; {args.count} runs each, median")
        baseline = median_us(lambda: template.personalize(recipient), args.count)
        print(f"{'baseline: personalize':<24} {baseline:10.1f} µs")
        for name, (command, filename, algorithm) in keys.items():
            subprocess.run(["openssl", *command], cwd=tmp, check=True, capture_output=True)
            key = DkimKey.from_file(
                tmp / filename,
                selector="bench",
                algorithm=algorithm or "ed25519-sha256",
            )
            signer = DkimSigner([key], domain="example.org", from_domain="example.org")
            signed = signer.sign(raw)
            record = {b"bench._domainkey.example.org.": key.txt.encode("ascii")}
            assert dkim.verify(signed, dnsfunc=lambda n, timeout=5, r=record: r.get(n))
            cost = median_us(lambda s=signer: s.sign(raw), args.count)
            print(
                f"{'dkim sign ' + name:<24} {cost:10.1f} µs per signature"
                f"  ({cost / baseline:,.0f}x baseline; {1e6 / cost:,.0f} messages/s/core)"
            )


if __name__ == "__main__":
    main()
