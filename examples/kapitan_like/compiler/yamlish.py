"""A small YAML subset, read and written without third-party packages.

Enough for the inventory and the compiled outputs: block mappings and
block lists (of scalars or of mappings) by indentation, flow lists of
scalars (``[a, b]``), comments, and scalars (strings plain or quoted,
integers, floats, true/false, null). Anything else is an error with the
file name and line number.
"""
import json
import re

_INT = re.compile(r"^-?[0-9]+$")
_FLOAT = re.compile(r"^-?[0-9]+\.[0-9]+$")
_PLAIN_SAFE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@${}:-]*$")


class YamlError(ValueError):
    """A line this subset cannot read."""


def _scalar(text):
    """The Python value of one scalar token."""
    if text in ("", "~", "null"):
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        return text[1:-1].replace("''", "'")
    if text[0] == "[":
        inner = text[1:-1].strip()
        return [_scalar(t.strip()) for t in inner.split(",")] if inner else []
    if text == "{}":
        return {}
    return text


def _strip_comment(line):
    """The line without a trailing ``# comment`` (outside quotes)."""
    if "#" not in line:
        return line.rstrip()
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


class _Parser:
    """Recursive descent over (indent, text, line number) tuples."""

    def __init__(self, text, name):
        self.name = name
        self.lines = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = _strip_comment(raw)
            if line.strip() and line.strip() != "---":
                self.lines.append((len(line) - len(line.lstrip(" ")), line.strip(), number))
        self.pos = 0

    def fail(self, why):
        number = self.lines[min(self.pos, len(self.lines) - 1)][2] if self.lines else 0
        raise YamlError(f"{self.name}:{number}: {why}")

    def parse(self):
        if not self.lines:
            return {}
        value = self.block(self.lines[0][0])
        if self.pos != len(self.lines):
            self.fail("unexpected indentation")
        return value

    def block(self, indent):
        if self.lines[self.pos][1].startswith("- ") or self.lines[self.pos][1] == "-":
            return self.sequence(indent)
        return self.mapping(indent)

    def mapping(self, indent):
        result = {}
        while self.pos < len(self.lines):
            ind, text, _ = self.lines[self.pos]
            if ind < indent:
                break
            if ind > indent:
                self.fail("unexpected indentation")
            if text.startswith("- "):
                break
            key, sep, rest = text.partition(":")
            if not sep or (rest and rest[0] != " "):
                self.fail("expected 'key: value'")
            key = _scalar(key.strip())
            rest = rest.strip()
            self.pos += 1
            if rest:
                result[key] = _scalar(rest)
            elif self._opens_block(indent):
                result[key] = self.block(self.lines[self.pos][0])
            else:
                result[key] = None
        return result

    def _opens_block(self, indent):
        """Whether the next line holds the value of a key at `indent`: more
        indented, or a list at the same indentation."""
        if self.pos >= len(self.lines):
            return False
        ind, text, _ = self.lines[self.pos]
        return ind > indent or (ind == indent and text.startswith("- "))

    def sequence(self, indent):
        result = []
        while self.pos < len(self.lines):
            ind, text, number = self.lines[self.pos]
            if ind != indent or not (text.startswith("- ") or text == "-"):
                break
            rest = text[1:].strip()
            if not rest:
                self.pos += 1
                result.append(self.block(self.lines[self.pos][0]))
            elif re.match(r"^[A-Za-z0-9_.-]+: |^[A-Za-z0-9_.-]+:$", rest):
                # "- key: value" opens a mapping whose keys sit two further in.
                self.lines[self.pos] = (indent + 2, rest, number)
                result.append(self.mapping(indent + 2))
            else:
                self.pos += 1
                result.append(_scalar(rest))
        return result


def loads(text, name="<string>"):
    """Parses YAML-subset text into dicts, lists and scalars."""
    return _Parser(text, name).parse()


def load_file(path):
    """Parses one YAML-subset file."""
    with open(path, encoding="utf-8") as f:
        return loads(f.read(), path)


def _dump_scalar(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN_SAFE.match(text) and text not in ("true", "false", "null"):
        return text
    return json.dumps(text)


def _dump(value, indent, out):
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            out.append(pad + "{}")
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{_dump_scalar(key)}:")
                _dump(item, indent + 2, out)
            else:
                out.append(f"{pad}{_dump_scalar(key)}: {_dump_inline(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}-")
                _dump(item, indent + 2, out)
            else:
                out.append(f"{pad}- {_dump_inline(item)}")
    else:
        out.append(pad + _dump_scalar(value))


def _dump_inline(value):
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _dump_scalar(value)


def dumps(value):
    """YAML-subset text for dicts, lists and scalars (loads() reads it back)."""
    out = []
    _dump(value, 0, out)
    return "\n".join(out) + "\n"
