"""Splitting a document into overlapping chunks that an embedding model reads whole.

Chunks are built from sentences and end at a paragraph break once they are long enough,
else at the sentence that would overflow them; a sentence longer than a chunk is cut by
words. Each chunk after the first starts with the last sentences of the one before (about
`overlap` tokens), so a passage that straddles a boundary is found from either side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    opens_paragraph: bool


def chunk(text: str, count_tokens: Callable[[str], int], *, size: int = 240, overlap: int = 40) -> list[str]:
    chunks: list[str] = []
    current: list[_Piece] = []
    for piece in _pieces(text, count_tokens, size):
        used = sum(p.tokens for p in current)
        full = used + piece.tokens > size
        at_break = piece.opens_paragraph and used >= size * 2 // 3
        if current and (full or at_break):
            chunks.append(_join(current))
            current = _tail(current, overlap, room=size - piece.tokens)
        current.append(piece)
    if current:
        chunks.append(_join(current))
    return chunks


def _pieces(text: str, count_tokens: Callable[[str], int], size: int) -> list[_Piece]:
    out: list[_Piece] = []
    for paragraph in _PARAGRAPHS.split(text):
        opens = True
        for sentence in _SENTENCES.split(paragraph.strip()):
            if not sentence:
                continue
            for part in _fit(sentence, count_tokens, size):
                out.append(_Piece(part, count_tokens(part), opens))
                opens = False
    return out


def _fit(sentence: str, count_tokens: Callable[[str], int], size: int) -> list[str]:
    """The sentence, or slices of its words when it alone is longer than a chunk. Word counts
    add up (tokenizers split at whitespace first), which keeps a 1 MB run-on sentence linear."""
    if count_tokens(sentence) <= size:
        return [sentence]
    out: list[str] = []
    current: list[str] = []
    used = 0
    for word in sentence.split():
        for part in _cut(word, count_tokens, size):
            tokens = count_tokens(part)
            if current and used + tokens > size:
                out.append(" ".join(current))
                current, used = [], 0
            current.append(part)
            used += tokens
    if current:
        out.append(" ".join(current))
    return out


def _cut(word: str, count_tokens: Callable[[str], int], size: int) -> list[str]:
    """A "word" longer than a chunk (text without spaces: Chinese, Japanese, a CSV line, minified
    code) in slices of `size` characters: a token covers at least one character, so each fits."""
    if len(word) <= size or count_tokens(word) <= size:
        return [word]
    return [word[i : i + size] for i in range(0, len(word), size)]


def _tail(pieces: list[_Piece], overlap: int, *, room: int) -> list[_Piece]:
    """The last sentences, up to `overlap` tokens, that leave `room` for the next piece."""
    kept: list[_Piece] = []
    total = 0
    for piece in reversed(pieces):
        if total + piece.tokens > min(overlap, room):
            break
        kept.insert(0, _Piece(piece.text, piece.tokens, opens_paragraph=not kept and piece.opens_paragraph))
        total += piece.tokens
    return kept


def _join(pieces: list[_Piece]) -> str:
    text = ""
    for piece in pieces:
        if text:
            text += "\n\n" if piece.opens_paragraph else " "
        text += piece.text
    return text
