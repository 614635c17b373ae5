"""A tiny template engine in the spirit of Jinja, for the compiled outputs.

Syntax::

    {{ path.to.value | filter | filter }}
    {% for item in path %} ... {% endfor %}
    {% for key, value in path %} ... {% endfor %}     (a mapping's items)
    {% if path %} ... {% else %} ... {% endif %}      (also: if not path)

A line holding nothing but a ``{% ... %}`` tag disappears entirely (Jinja's
trim_blocks + lstrip_blocks), so templates can be indented naturally.
Filters: upper, lower, quote (a JSON/YAML double-quoted string), json,
length, indent (by two spaces), lines (a list joined by newlines).
"""
import json
import re

_TAG = re.compile(r"({{.*?}}|{%.*?%})")
_BLOCK_LINE = re.compile(r"^[ \t]*({%.*?%})[ \t]*\n", re.M)

FILTERS = {
    "upper": lambda v: str(v).upper(),
    "lower": lambda v: str(v).lower(),
    "quote": lambda v: json.dumps(str(v)),
    "json": lambda v: json.dumps(v, sort_keys=True),
    "length": len,
    "indent": lambda v: str(v).replace("\n", "\n  "),
    "lines": lambda v: "\n".join(str(x) for x in v),
}


class TemplateError(ValueError):
    """A template that does not parse, or a name that does not resolve."""


def lookup(context, path):
    """The value at a dotted path ('component.env.LOG_LEVEL') in context."""
    value = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(f"{path!r}: no {part!r}")
    return value


class _Var:
    def __init__(self, expr):
        path, *filters = [p.strip() for p in expr.split("|")]
        self.path = path
        for name in filters:
            if name not in FILTERS:
                raise TemplateError(f"unknown filter {name!r}")
        self.filters = [FILTERS[name] for name in filters]

    def render(self, context, out):
        if self.path[0] in "'\"":
            value = self.path[1:-1]
        else:
            value = lookup(context, self.path)
        for f in self.filters:
            value = f(value)
        out.append(value if isinstance(value, str) else _text(value))


def _text(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


class _For:
    def __init__(self, names, path, body):
        self.names, self.path, self.body = names, path, body

    def render(self, context, out):
        seq = lookup(context, self.path)
        items = sorted(seq.items()) if isinstance(seq, dict) else seq
        inner = dict(context)
        for item in items:
            if len(self.names) == 1:
                inner[self.names[0]] = item
            else:
                inner.update(zip(self.names, item))
            for node in self.body:
                node.render(inner, out)


class _If:
    def __init__(self, expr, body, orelse):
        self.negate = expr.startswith("not ")
        self.path = expr[4:].strip() if self.negate else expr
        self.body, self.orelse = body, orelse

    def render(self, context, out):
        try:
            value = bool(lookup(context, self.path))
        except TemplateError:
            value = False
        for node in (self.body if value != self.negate else self.orelse):
            node.render(context, out)


class _Text:
    def __init__(self, text):
        self.text = text

    def render(self, context, out):
        out.append(self.text)


class Template:
    """A parsed template; render(context) returns the text."""

    def __init__(self, source, name="<template>"):
        self.name = name
        tokens = _TAG.split(_BLOCK_LINE.sub(r"\1", source))
        self.nodes, rest = self._parse(tokens, 0, ())
        if rest != len(tokens):
            raise TemplateError(f"{name}: unexpected {tokens[rest]!r}")

    def _parse(self, tokens, i, stop):
        nodes = []
        while i < len(tokens):
            tok = tokens[i]
            if tok.startswith("{{"):
                nodes.append(_Var(tok[2:-2].strip()))
            elif tok.startswith("{%"):
                words = tok[2:-2].split()
                if words and words[0] in stop:
                    return nodes, i
                if words[:1] == ["for"] and "in" in words:
                    k = words.index("in")
                    names = [n.strip() for n in " ".join(words[1:k]).split(",")]
                    body, i = self._parse(tokens, i + 1, ("endfor",))
                    nodes.append(_For(names, words[k + 1], body))
                elif words[:1] == ["if"]:
                    body, i = self._parse(tokens, i + 1, ("else", "endif"))
                    orelse = []
                    if tokens[i][2:-2].split()[0] == "else":
                        orelse, i = self._parse(tokens, i + 1, ("endif",))
                    nodes.append(_If(" ".join(words[1:]), body, orelse))
                else:
                    raise TemplateError(f"{self.name}: unknown tag {tok!r}")
            elif tok:
                nodes.append(_Text(tok))
            i += 1
        if stop:
            raise TemplateError(f"{self.name}: missing {'/'.join(stop)}")
        return nodes, i

    def render(self, context):
        out = []
        for node in self.nodes:
            node.render(context, out)
        return "".join(out)
