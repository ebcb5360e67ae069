"""The audience: subscribers, their category choices and their tokens.

This package imports only the leaves of ``digest`` (config, db, errors), never the
sending pipeline; the pipeline imports it.
"""
