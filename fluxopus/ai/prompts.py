"""Skill instructions are Jinja2 templates, rendered in a sandbox with the run's `input` (and, for a
skill grounded in knowledge, the search's hits as `knowledge`).

Templates come from users, so they run in Jinja's SandboxedEnvironment (no attribute access
to Python internals) with undefined names as errors, and with the arithmetic that can build
huge strings or numbers (`'x' * 10**9`, `9 ** 9 ** 9`) capped.
"""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import referencing.exceptions
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, Undefined, meta, pass_eval_context
from jinja2.filters import do_join, do_replace
from jinja2.sandbox import SandboxedEnvironment

MAX_PROMPT_CHARS = 200_000
MAX_INPUT_BYTES = 100_000
MAX_QUERY_CHARS = 1000  # a knowledge search's query, as search takes it


class PromptError(ValueError):
    """A template or input the user must fix; the message says what."""


# String methods and filters that pad or reformat: a prompt never needs them, and each can
# build a huge string from a tiny template ('x'.ljust(10**9), 'x'|center(10**9), '{:>9999999}').
_UNSAFE_STR_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "format", "format_map"})
_UNSAFE_FILTERS = ("center", "indent", "format", "wordwrap")
_PERCENT_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _too_big(size: int) -> None:
    if size > MAX_PROMPT_CHARS:
        raise PromptError(f"The rendered prompt would be over {MAX_PROMPT_CHARS} characters")


@pass_eval_context
def _bounded_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _too_big(len(d) * max(len(items) - 1, 0) + sum(len(str(i)) for i in items))
    return str(do_join(eval_ctx, items, d, attribute))


@pass_eval_context
def _bounded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    hits = (len(s) + 1 if old == "" else s.count(old)) if count is None else count
    _too_big(len(s) + hits * max(len(new) - len(old), 0))
    return do_replace(eval_ctx, s, old, new, count)


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in _UNSAFE_FILTERS:
            del self.filters[name]
        self.filters["join"] = _bounded_join
        self.filters["replace"] = _bounded_replace

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format and format_map are refused by is_safe_attribute instead

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS | {"join", "replace"}:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "%":
            if isinstance(left, str):
                for width, precision in _PERCENT_WIDTH.findall(left):
                    if "*" in (width, precision):
                        raise PromptError("'*' widths are not allowed in templates")
                    _too_big(int(width or 0) + int(precision or 0))
            return operator.mod(left, right)
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise PromptError("Exponent too large in template")
            return operator.pow(left, right)
        if isinstance(left, str | list) or isinstance(right, str | list):
            count = right if isinstance(left, str | list) else left
            size = len(left if isinstance(left, str | list) else right)
            if isinstance(count, int) and count * size > MAX_PROMPT_CHARS:
                raise PromptError(f"Template repetition would exceed {MAX_PROMPT_CHARS} characters")
        return operator.mul(left, right)


def _printable(value: Any) -> Any:
    # `{{ input.items }}` would print "<built-in method … at 0x…>": a mistake, and a leak.
    if callable(value) and not isinstance(value, Undefined):  # printing an Undefined explains itself
        raise PromptError("Template error: a method or function cannot be printed (did you mean to call it?)")
    return value


_env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, finalize=_printable)


def check_template(source: str) -> str:
    try:
        _env.parse(source)
    except TemplateSyntaxError as exc:
        raise PromptError(f"Template syntax error on line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise PromptError("Template syntax error: expressions or blocks nested too deeply") from None
    return source


@functools.lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    """Skills run the same instructions again and again: compile each once."""
    return _env.from_string(source)


@functools.lru_cache(maxsize=512)
def _uses_knowledge(source: str) -> bool:
    return "knowledge" in meta.find_undeclared_variables(_env.parse(source))


def render(source: str, input: Mapping[str, Any], knowledge: list[dict[str, Any]] | None = None) -> str:
    """The prompt. `knowledge`, the hits of a grounded skill's search (None: not grounded), is the
    template's `knowledge`; a template that does not use it gets them appended (knowledge_block)."""
    text = _render(source, {"input": input, "knowledge": knowledge or []})
    if knowledge is not None and not _uses_knowledge(source):
        text += knowledge_block(knowledge)
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"The rendered prompt is over {MAX_PROMPT_CHARS} characters")
    if not text.strip():
        raise PromptError("The rendered prompt is empty")
    return text


def render_query(source: str, input: Mapping[str, Any]) -> str:
    """A knowledge search's query from its template: one line of words, cut to what search takes; may
    be empty (then nothing is searched)."""
    return _one_line(_render(source, {"input": input}))


def input_text(input: Any) -> str:
    """The default query of a grounded skill: the input's values (strings, numbers), without its keys,
    which are the skill's vocabulary rather than the user's."""
    parts: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            parts.append(str(value))

    walk(input)
    return _one_line(" ".join(parts))


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_QUERY_CHARS:
        return text
    return text[:MAX_QUERY_CHARS].rsplit(" ", 1)[0]


def knowledge_block(knowledge: list[dict[str, Any]]) -> str:
    """What a grounded prompt ends with when its template does not place `knowledge` itself."""
    if not knowledge:
        return "\n\n---\nKnowledge: nothing in the company's knowledge matched this request.\n"
    lines = ["\n\n---\nKnowledge (excerpts from the company's documents, best match first; cite them by number):"]
    for number, hit in enumerate(knowledge, start=1):
        lines.append(f"\n[{number}] {hit['title']}\n{hit['snippet']}")
    return "\n".join(lines) + "\n"


def _render(source: str, context: Mapping[str, Any]) -> str:
    try:
        # Streamed, so a loop that prints forever stops at the limit instead of filling memory.
        parts: list[str] = []
        size = 0
        for part in _compiled(source).generate(**context):
            size += len(part)
            _too_big(size)
            parts.append(part)
        return "".join(parts)
    except PromptError:
        raise
    except TemplateError as exc:
        raise PromptError(f"Template error: {exc.message}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise PromptError(f"Template error: {exc}") from None
    except RecursionError:
        raise PromptError("Template error: recursion too deep (a macro that calls itself without end?)") from None


def validate_input(schema: dict[str, Any] | None, input: dict[str, Any]) -> None:
    if len(json.dumps(input)) > MAX_INPUT_BYTES:
        raise PromptError(f"input is over {MAX_INPUT_BYTES} bytes")
    if schema is None:
        return
    validator = jsonschema.validators.validator_for(schema)(schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(input))
    except referencing.exceptions.Unresolvable as exc:
        raise PromptError(f"input_schema has a $ref that cannot be resolved: {exc}") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise PromptError(
            f"input{'.' + where.replace('/', '.') if where else ''} does not match input_schema: {error.message}"
        )
