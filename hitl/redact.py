"""Text that leaves a service in an answer: without memory addresses (an object's repr,
as in `<_io.BytesIO object at 0x7f...>`), which tell a caller about the process's layout
and nothing about their request."""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"\s+at\s+0x[0-9a-fA-F]+|0x[0-9a-fA-F]{8,}")


def without_addresses(text: str) -> str:
    return _ADDRESS.sub("", text)
