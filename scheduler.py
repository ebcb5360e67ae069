"""Run the weekly digest on a schedule: ``python scheduler.py [--config digest.toml]``.

APScheduler 3 (blocking scheduler, cron trigger from the config, job kept in the project's
database). All the work is :func:`digest.edition.run.run_edition`, the same as ``digest send``.
SIGTERM or SIGINT stops it cleanly: a running send finishes its current batch first.
"""

from __future__ import annotations

import argparse
import logging
import sys

from digest.cli.schedule import run_forever
from digest.errors import DigestError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: ./digest.toml or $DIGEST_CONFIG)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run_forever(args.config)
    except DigestError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
