"""Run the weekly digest on a schedule from a checkout: ``python scheduler.py [--config FILE]``.

The same as ``digest schedule``, the command a ``pip install`` gives; the work is in
:mod:`digest.cli.schedule`.
"""

import sys

from digest.cli.schedule import main

if __name__ == "__main__":
    sys.exit(main())
