"""Bounces and complaints: read DSNs (RFC 3464) and ARF complaints (RFC 5965), tie each to a
delivery, classify it (email-standards.md §10) and act on it.

``parse`` (bytes -> Report, pure), ``classify`` (codes -> kind, pure), ``match`` (Report ->
delivery), ``apply`` (suppress, count, pause), ``process`` (one transaction per message),
``sources`` (file, mbox, Maildir, stdin, IMAP), ``webhook`` (JSON and Amazon SES via SNS),
``report`` (``digest deliverability``).
"""
