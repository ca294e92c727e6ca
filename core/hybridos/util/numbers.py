"""Numbers in text from outside (files of an image, package headers, repository metadata).

``str.isdigit`` also accepts "²" and "٣", which ``int`` then refuses or reads, and ``int`` refuses more than
4300 digits: use :func:`is_decimal` before ``int`` on anything read from outside.
"""

from __future__ import annotations


def is_decimal(text: str, max_digits: int = 19) -> bool:
    """``text`` is 1 to ``max_digits`` ASCII digits."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()
