"""Validate bench/knowledge_eval.json, the labelled set behind Knowledge search quality numbers.

Checks ids, counts per query kind, document lengths, that identifier queries name an identifier found
verbatim in (every document that contains it is among) their relevant documents, and that paraphrase
queries share no content word with any relevant document (English stopwords removed, crude stemming).

    python3 bench/check_knowledge_eval.py [path/to/knowledge_eval.json]
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("knowledge_eval.json")
MIN_DOCS, MIN_QUERIES = 220, 70
MIN_PER_KIND = {"paraphrase": 25, "identifier": 15, "keyword": 15, "mixed": 10}
SHORT_WORDS, LONG_WORDS = (40, 250), (400, 600)  # most documents are short; a few long ones span chunks
MIN_LONG_DOCS = 8
STOPWORDS = frozenset(
    "a about above after again against all am an and any are aren as at be because been before being below between "
    "both but by can couldn d did didn do does doesn doing don down during each few for from further had hadn has "
    "hasn have haven having he her here hers herself him himself his how i if in into is isn it its itself just ll "
    "m ma me more most my myself no nor not now o of off on once only or other our ours ourselves out over own re "
    "s same she should shouldn so some such t than that the their theirs them themselves then there these they "
    "this those through to too under until up ve very was wasn we were weren what when where which while who whom "
    "why will with won would wouldn y you your yours yourself yourselves".split()
)
SUFFIXES = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""))
IDENT_RE = re.compile(r"^(--\w[\w-]*|\S*\d\S*|\w+(?:[_.-]\w+)+)$")


def stem(word: str) -> str:
    """Crude, deliberately aggressive stemmer: strip plural/tense suffixes, a final e, a doubled consonant."""
    previous = ""
    while word != previous:
        previous = word
        for suffix, replacement in SUFFIXES:
            keep = 3 if suffix in ("ing", "s") else 2
            if word.endswith(suffix) and len(word) - len(suffix) >= keep and not word.endswith("ss"):
                word = word[: -len(suffix)] + replacement
                break
    if word.endswith("e") and len(word) > 2:
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]
    return word


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS}


def identifiers(query: str) -> list[str]:
    tokens = (t.strip("?!,;:()\"'").rstrip(".") for t in query.split())
    return [t for t in tokens if t and IDENT_RE.match(t)]


def main() -> int:
    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH).read_text(encoding="utf-8"))
    docs, queries, errors = data["documents"], data["queries"], []
    text = {d["id"]: f"{d['title']}\n{d['content']}" for d in docs}
    if len(text) != len(docs) or len({q["id"] for q in queries}) != len(queries):
        errors.append("duplicate document or query ids")
    for i, item in enumerate(docs, 1):
        if item["id"] != f"d{i:03d}":
            errors.append(f"document #{i} has id {item['id']}, expected d{i:03d}")
    lengths = {d["id"]: len(d["content"].split()) for d in docs}
    long_docs = [i for i, n in lengths.items() if n > SHORT_WORDS[1]]
    for doc_id, n in lengths.items():
        lo, hi = LONG_WORDS if doc_id in long_docs else SHORT_WORDS
        if not lo <= n <= hi:
            errors.append(f"{doc_id}: {n} words, outside {lo}-{hi}")
    kinds = Counter(q["kind"] for q in queries)
    for kind, minimum in MIN_PER_KIND.items():
        if kinds[kind] < minimum:
            errors.append(f"only {kinds[kind]} {kind} queries, need {minimum}")
    for n, q in enumerate(queries, 1):
        qid, rel = q["id"], q["relevant"]
        if q["kind"] not in MIN_PER_KIND:
            errors.append(f"{qid}: unknown kind {q['kind']!r}")
        if qid != f"q{n:03d}":
            errors.append(f"{qid}: query ids must run q001, q002, ...")
        if not rel or len(set(rel)) != len(rel) or any(r not in text for r in rel):
            errors.append(f"{qid}: relevant must be non-empty, unique, existing ids: {rel}")
            continue
        if q["kind"] in ("identifier", "mixed"):
            idents = identifiers(q["q"])
            if q["kind"] == "identifier" and not idents:
                errors.append(f"{qid}: identifier query without an identifier: {q['q']!r}")
            for ident in idents:
                holders = {doc_id for doc_id, body in text.items() if ident in body}
                if not holders & set(rel):
                    errors.append(f"{qid}: {ident!r} appears in no relevant document")
                elif holders - set(rel):
                    errors.append(f"{qid}: {ident!r} also in unlabelled {sorted(holders - set(rel))}")
        if q["kind"] == "paraphrase":
            words = content_stems(q["q"])
            for doc_id in rel:
                shared = words & content_stems(text[doc_id])
                if shared:
                    errors.append(f"{qid}: paraphrase shares {sorted(shared)} with {doc_id} ({q['q']!r})")
    if len(docs) < MIN_DOCS or len(queries) < MIN_QUERIES or len(long_docs) < MIN_LONG_DOCS:
        errors.append(f"need >= {MIN_DOCS} docs, {MIN_QUERIES} queries, {MIN_LONG_DOCS} long docs")
    rel_sizes = Counter(len(q["relevant"]) for q in queries)
    print(f"documents: {len(docs)} ({len(long_docs)} long, {min(lengths.values())}-{max(lengths.values())} words)")
    print(f"queries:   {len(queries)} " + ", ".join(f"{k}={kinds[k]}" for k in MIN_PER_KIND))
    print("relevant per query: " + ", ".join(f"{n} doc(s) x{c}" for n, c in sorted(rel_sizes.items())))
    for error in errors:
        print(f"ERROR {error}")
    print("OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
