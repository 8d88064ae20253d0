"""Which graphs a SPARQL Update may change: the embedded store rescans only those for its fingerprint.

A conservative reading of the request's text: graphs named in templates
(`INSERT`/`DELETE` blocks, `GRAPH <g> {…}`, `WITH <g>`), in graph management
operations (`DROP`, `CLEAR`, `LOAD … INTO`, `ADD`/`MOVE`/`COPY … TO`), and the
default graph when a template writes triples outside any `GRAPH`. `WHERE`
patterns only read. Anything it does not follow (a variable graph, `ALL`,
`NAMED`, an unknown prefix, a relative IRI) answers None: the whole store.
"""

from __future__ import annotations

import re

from dmsupdate.state.content import SPARQL_COMMENT, SPARQL_IRI, SPARQL_STRING

# One token at a time. Outside strings, `\` and the character after it stay together: in
# an update the engine accepts, that is only a prefixed name's escape (`ex:a\'b`), which
# it reads as part of the name, not as the start of a string.
_TOKENS = re.compile(
    rf"""
    (?P<space>(?:\s+|{SPARQL_COMMENT})+)
  | (?P<iri>{SPARQL_IRI})
  | (?P<string>{SPARQL_STRING})
  | (?P<brace>[{{}}])
  | (?P<word>(?:[^\s{{}}<>"'\#;\\]|\\.)+|;|.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Everything up to the next brace outside IRIs, strings and comments, in one match: a block
# of data (thousands of triples in `INSERT DATA`) is passed without a Python step per term.
_BLOCK_RUN = re.compile(
    rf"""(?:\s+|{SPARQL_COMMENT}|{SPARQL_IRI}|{SPARQL_STRING}|\\.|[^\s{{}}<"'\#\\]+|<)+""",
    re.VERBOSE | re.DOTALL,
)


class _Everything(Exception):
    """The update may touch graphs this reading cannot name."""


class _Reader:
    """The update's tokens, read one at a time from a position in its text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.prefixes: dict[str, str] = {}
        self._next: tuple[str, int] | None = None  # the next token and where it ends

    def _scan(self) -> tuple[str, int]:
        if self._next is None:
            match = _TOKENS.match(self.text, self.pos)
            if match is not None and match.lastgroup == "space":
                match = _TOKENS.match(self.text, match.end())
            self._next = ("", len(self.text)) if match is None else (match.group(), match.end())
        return self._next

    def at_end(self) -> bool:
        return not self._scan()[0]

    def peek(self) -> str:
        return self._scan()[0]

    def upper(self) -> str:
        return self.peek().upper()

    def take(self) -> str:
        token, self.pos = self._scan()
        self._next = None
        return token

    def graph_iri(self) -> str:
        """An IRI (or a prefixed name this update declared); anything else touches the unknown."""
        token = self.take()
        if token.startswith("<") and token.endswith(">") and ":" in token:
            return token[1:-1]
        prefix, colon, local = token.partition(":")
        if colon and prefix in self.prefixes and not token.startswith("?"):
            return self.prefixes[prefix] + local
        raise _Everything

    def skip_block(self) -> None:
        """Pass a `{…}` block whole, nested blocks included."""
        if self.take() != "{":
            raise _Everything
        depth, text = 1, self.text
        while depth:
            run = _BLOCK_RUN.match(text, self.pos)
            if run is not None:
                self.pos = run.end()
            if self.pos >= len(text):
                raise _Everything
            depth += 1 if text[self.pos] == "{" else -1
            self.pos += 1

    def template(self, default: str, touched: set[str]) -> None:
        """A quad template (or pattern of DELETE WHERE): its GRAPH blocks, and the default graph."""
        if self.take() != "{":
            raise _Everything
        while True:
            token = self.upper()
            if token == "}":
                self.take()
                return
            if not token:
                raise _Everything
            if token == "GRAPH":
                self.take()
                touched.add(self.graph_iri())
                self.skip_block()
            elif token == "{":
                self.skip_block()
                touched.add(default)
            else:
                self.take()
                if token != ".":
                    touched.add(default)


def _graph_ref(reader: _Reader) -> str:
    """`GRAPH <g>`, `<g>` or `DEFAULT` (ADD/MOVE/COPY/CLEAR/DROP); NAMED and ALL are everything."""
    token = reader.upper()
    if token == "DEFAULT":
        reader.take()
        return ""
    if token == "GRAPH":
        reader.take()
    return reader.graph_iri()


def _operation(reader: _Reader, touched: set[str]) -> None:
    word = reader.take().upper()
    if word in ("PREFIX", "BASE"):
        if word == "BASE":
            raise _Everything  # relative IRIs would need resolving
        name = reader.take()
        target = reader.take()
        if not (name.endswith(":") and target.startswith("<")):
            raise _Everything
        reader.prefixes[name[:-1]] = target[1:-1]
        return
    if word in ("DROP", "CLEAR"):
        if reader.upper() == "SILENT":
            reader.take()
        touched.add(_graph_ref(reader))
    elif word == "CREATE":
        if reader.upper() == "SILENT":
            reader.take()
        _graph_ref(reader)
    elif word == "LOAD":
        if reader.upper() == "SILENT":
            reader.take()
        reader.take()
        if reader.upper() == "INTO":
            reader.take()
            touched.add(_graph_ref(reader))
        else:
            touched.add("")
    elif word in ("ADD", "MOVE", "COPY"):
        if reader.upper() == "SILENT":
            reader.take()
        source = _graph_ref(reader)
        if reader.take().upper() != "TO":
            raise _Everything
        touched.add(_graph_ref(reader))
        if word == "MOVE":
            touched.add(source)
    elif word in ("INSERT", "DELETE", "WITH"):
        _modify(reader, word, touched)
    else:
        raise _Everything


def _modify(reader: _Reader, word: str, touched: set[str]) -> None:
    default = ""
    if word == "WITH":
        default = reader.graph_iri()
        word = reader.take().upper()
    if word not in ("INSERT", "DELETE"):
        raise _Everything
    if reader.upper() in ("DATA", "WHERE"):
        reader.take()
        reader.template(default, touched)  # INSERT DATA, DELETE DATA, DELETE WHERE: no pattern after
        return
    reader.template(default, touched)
    if word == "DELETE" and reader.upper() == "INSERT":
        reader.take()
        reader.template(default, touched)
    while reader.upper() == "USING":
        reader.take()
        if reader.upper() == "NAMED":
            reader.take()
        reader.take()
    if reader.take().upper() != "WHERE":
        raise _Everything
    reader.skip_block()


def touched_graphs(text: str) -> set[str] | None:
    """The graphs ('' = default) the update may change, or None when that cannot be told."""
    reader = _Reader(text)
    touched: set[str] = set()
    try:
        while not reader.at_end():
            if reader.peek() == ";":
                reader.take()
                continue
            prologue = reader.upper() in ("PREFIX", "BASE")
            _operation(reader, touched)
            if not prologue and reader.peek() not in (";", ""):
                raise _Everything
    except (_Everything, IndexError):
        return None
    return touched
