"""The audience: subscribers, their category choices, consent records, confirmation and
unsubscribe tokens, the suppression list, and CSV import and export.

This package imports only the leaves of ``digest`` (config, store.db, textio, errors), never the
sending pipeline; the pipeline imports it.
"""
