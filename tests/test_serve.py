"""`digest serve` and `digest admin`: a port already taken is one readable error."""

from __future__ import annotations

import socket

import pytest

from digest.config import Settings
from digest.errors import DigestError
from digest.web.admin.serve import serve_admin
from digest.web.server import serve


def test_a_taken_port_is_one_readable_error(db_settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said: list[str] = []
        with pytest.raises(DigestError) as subscriber_pages:
            serve(db_settings, host="127.0.0.1", port=port, echo=said.append)
        with pytest.raises(DigestError) as console:
            serve_admin(db_settings, host="127.0.0.1", port=port, echo=said.append)
    for error in (subscriber_pages.value, console.value):
        assert str(error).startswith(f"cannot listen on 127.0.0.1:{port} (")
        assert str(error).endswith("): try --port")
    assert said == []  # nothing announced a server that is not there
