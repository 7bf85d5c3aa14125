"""The stand-in for semantic retrieval: deterministic, explainable, no model.

A text's tokens are its runs of letters and digits, lower-cased. A record's score for a
query is the cosine similarity of their token counts: 1.0 for the same words in the same
proportions, 0.0 when they share no word (such records are not returned). Ties go to the
newest record, then to the smaller record id.
"""

from __future__ import annotations

import math
import re
from collections import Counter

__all__ = ["score", "tokens"]

_TOKEN = re.compile(r"[^\W_]+")


def tokens(text: str) -> Counter[str]:
    return Counter(_TOKEN.findall(text.lower()))


def score(query: Counter[str], text: Counter[str]) -> float:
    """Cosine similarity of two token counts, in [0, 1]."""
    if not query or not text:
        return 0.0
    dot = sum(count * text[token] for token, count in query.items())
    if dot == 0:
        return 0.0
    norms = math.sqrt(sum(c * c for c in query.values())) * math.sqrt(
        sum(c * c for c in text.values())
    )
    return min(1.0, dot / norms)
