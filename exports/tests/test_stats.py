"""Whitespace token counts are exactly len(text.split()), whichever path counts them."""

import pytest

from exports.stats import whitespace_tokens

TEXTS = [
    "",
    " ",
    "word",
    "two words",
    " leading and trailing ",
    "runs   of  spaces",
    "first paragraph.\n\nsecond paragraph",
    "tabs\tand\x0bvertical\x0ctabs\rand\x1cinformation\x1dseparators\x1e\x1fhere",
    "\n\t \x1f",
    "no-break\xa0space, ideographic\u3000space, next line\x85, line\u2028separator",
    "accents é and 漢字 and emoji 😀",
    "control \x01 characters \x7f are words",
]


@pytest.mark.parametrize("text", TEXTS)
def test_whitespace_tokens_are_str_split(text):
    assert whitespace_tokens(text) == len(text.split())
