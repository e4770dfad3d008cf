"""Show user-supplied text (paths, prompts, card names, error reasons) exactly as text.

File names can hold ESC, newlines or rich markup such as ``[bold]``: echoed raw they would drive the terminal or
be styled, and a stray ``[/]`` makes rich raise. Every string that did not come from our own code goes through
:func:`plain` before ``print`` and :func:`markup` before a rich ``Console``/``Table``.
"""
from __future__ import annotations

import re

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``), so it stays on one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


def markup(text: object) -> str:
    """:func:`plain`, then escaped for rich markup."""
    return escape(plain(text))
