"""Skill instructions are Jinja2 templates, rendered in a sandbox with the run's `input`.

Templates come from users, so they run in Jinja's SandboxedEnvironment (no attribute access
to Python internals) with undefined names as errors, and with the arithmetic that can build
huge strings or numbers (`'x' * 10**9`, `9 ** 9 ** 9`) capped.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from typing import Any

import jsonschema
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

MAX_PROMPT_CHARS = 200_000
MAX_INPUT_BYTES = 100_000


class PromptError(ValueError):
    """A template or input the user must fix; the message says what."""


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
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


_env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def check_template(source: str) -> str:
    try:
        _env.parse(source)
    except TemplateSyntaxError as exc:
        raise PromptError(f"Template syntax error on line {exc.lineno}: {exc.message}") from None
    return source


def render(source: str, input: Mapping[str, Any]) -> str:
    try:
        text = _env.from_string(source).render(input=input)
    except PromptError:
        raise
    except TemplateError as exc:
        raise PromptError(f"Template error: {exc.message}") from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise PromptError(f"Template error: {exc}") from None
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"The rendered prompt is over {MAX_PROMPT_CHARS} characters")
    if not text.strip():
        raise PromptError("The rendered prompt is empty")
    return text


def check_input_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise PromptError(f"not a valid JSON Schema at {where}: {exc.message}") from None
    return schema


def validate_input(schema: dict[str, Any] | None, input: dict[str, Any]) -> None:
    if len(json.dumps(input)) > MAX_INPUT_BYTES:
        raise PromptError(f"input is over {MAX_INPUT_BYTES} bytes")
    if schema is None:
        return
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(input))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise PromptError(
            f"input{'.' + where.replace('/', '.') if where else ''} does not match input_schema: {error.message}"
        )
