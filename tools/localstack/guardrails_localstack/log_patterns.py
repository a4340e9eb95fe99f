"""CloudWatch Logs filter patterns that match like AWS's, for metric filters.

LocalStack community applies metric filters on PutLogEvents, but its pattern matcher
matches every event: a metric filter for failed restarts would count every START, END and
REPORT line, and an alarm test could never fail. LocalStack leaves the matcher to plugins
(``get_pattern_matcher``); this one implements the parts of AWS's filter syntax that
metric filters on JSON decision logs need:

- JSON patterns ``{ <selector> <op> <value> }`` joined with ``&&`` and ``||`` and grouped
  with parentheses; selectors ``$.key`` or ``$.key.sub``; ``=``/``!=`` against a quoted
  string (``*`` is a wildcard) and ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against a
  number; ``IS NULL`` / ``NOT EXISTS`` are not supported;
- term patterns: every (quoted or bare) term must occur in the message; an empty pattern
  matches everything.

A pattern this module cannot parse matches nothing and is logged: a test that relies on
it then fails instead of passing by accident.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re

LOG = logging.getLogger(__name__)

TOKEN = re.compile(
    r'\s*(?:(?P<group>[(){}])|(?P<logic>&&|\|\|)|(?P<op>!=|<=|>=|=|<|>)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<selector>\$(?:\.[A-Za-z0-9_\-]+)+)|(?P<number>-?\d+(?:\.\d+)?))"
)


class PatternError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise PatternError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class JsonPattern:
    """A parsed ``{ ... }`` pattern: a tree of (op, left, right) and comparisons."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.position = 0
        if self._take("group") != "{":
            raise PatternError("a JSON pattern starts with {")
        self.tree = self._or()
        if self._take("group") != "}" or self.position != len(self.tokens):
            raise PatternError("a JSON pattern ends with }")

    def _peek(self):
        return self.tokens[self.position] if self.position < len(self.tokens) else (None, None)

    def _take(self, kind=None):
        token_kind, value = self._peek()
        if token_kind is None or (kind and token_kind != kind):
            raise PatternError(f"expected {kind}, got {value!r}")
        self.position += 1
        return value

    def _or(self):
        node = self._and()
        while self._peek() == ("logic", "||"):
            self._take()
            node = ("||", node, self._and())
        return node

    def _and(self):
        node = self._term()
        while self._peek() == ("logic", "&&"):
            self._take()
            node = ("&&", node, self._term())
        return node

    def _term(self):
        if self._peek() == ("group", "("):
            self._take()
            node = self._or()
            if self._take("group") != ")":
                raise PatternError("unbalanced parentheses")
            return node
        selector = self._take("selector")
        op = self._take("op")
        kind, value = self._peek()
        if kind == "string":
            if op not in ("=", "!="):
                raise PatternError(f"strings compare with = or !=, not {op}")
            self._take()
            return ("cmp", selector, op, json.loads(value))
        if kind == "number":
            self._take()
            return ("cmp", selector, op, float(value))
        raise PatternError(f"expected a string or a number after {selector} {op}")

    def matches(self, document) -> bool:
        return _evaluate(self.tree, document)


def _select(document, selector: str):
    value = document
    for key in selector[2:].split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _evaluate(node, document) -> bool:
    if node[0] == "||":
        return _evaluate(node[1], document) or _evaluate(node[2], document)
    if node[0] == "&&":
        return _evaluate(node[1], document) and _evaluate(node[2], document)
    _, selector, op, wanted = node
    value = _select(document, selector)
    if value is None:
        return False
    if isinstance(wanted, str):
        hit = isinstance(value, str) and fnmatch.fnmatchcase(value, wanted)
        return hit if op == "=" else not hit
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return {
        "=": value == wanted,
        "!=": value != wanted,
        "<": value < wanted,
        "<=": value <= wanted,
        ">": value > wanted,
        ">=": value >= wanted,
    }[op]


def matcher_for(pattern: str):
    """A ``(pattern, log_event) -> bool`` function, as LocalStack's logs provider calls it."""
    text = (pattern or "").strip()
    if not text:
        return lambda _pattern, _event: True
    if text.startswith("{"):
        try:
            parsed = JsonPattern(text)
        except PatternError as exc:
            LOG.warning(
                "Metric filter pattern %r is not supported by the harness (%s); it matches nothing", text, exc
            )
            return lambda _pattern, _event: False

        def json_match(_pattern, event):
            try:
                document = json.loads(event.get("message", ""))
            except (TypeError, ValueError):
                return False
            return isinstance(document, dict) and parsed.matches(document)

        return json_match
    terms = [term.strip('"') for term in re.findall(r'"[^"]*"|\S+', text)]
    return lambda _pattern, event: all(term in event.get("message", "") for term in terms)


def install() -> None:
    """Replace LocalStack's match-everything matcher."""
    from localstack.services.logs import provider

    provider.get_pattern_matcher = matcher_for
