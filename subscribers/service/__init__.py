"""The subscriber service: the one place that changes subscribers.

:mod:`~subscribers.service.people` changes one subscriber at a time (the CLI, the web pages,
the demo); :mod:`~subscribers.service.bulk` stores the batches of a CSV import that
:mod:`subscribers.merging` planned, through the one bulk writer of :mod:`digest.store.db`;
:mod:`~subscribers.service.imports` records each import written.
Functions take an open session and never commit: the caller owns the transaction.
"""

from subscribers.service.bulk import write_import
from subscribers.service.imports import record_import
from subscribers.service.people import *  # noqa: F403
from subscribers.service.people import __all__ as _people

__all__ = [*_people, "record_import", "write_import"]
