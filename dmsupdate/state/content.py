"""What an update's content may not do (DESIGN §6), checked alike by the control plane and the agent.

The publication API refuses such content before anything is written
(publications.validation); the agent refuses it again before applying a key,
so an object put into the bucket directly cannot do it either
(dmsupdate.agent.screening). One definition of each rule:

- a SPARQL Update may not fetch URLs (`LOAD`, `SERVICE`), nor drop or clear
  every graph (`DROP`/`CLEAR` `ALL`/`NAMED`/`DEFAULT`) unless the dataset allows
  it, nor nest deeper or run longer than the SPARQL engine can take: Oxigraph's
  parser and evaluator recurse, and a few thousand nested groups or chained
  terms overflow the stack and kill the process (no exception to catch);
- RDF/XML may not carry a DTD or entity declarations (entity expansion:
  a 643-byte document expands to gigabytes; external entities read files);
- a graph name must be an absolute IRI as the agent's RDF library reads it, and
  not one of the agent's own bookkeeping graphs.
"""

from __future__ import annotations

import re

import pyoxigraph as ox

# SPARQL Update bodies, decompressed: a much lower limit than RDF data (the whole
# update is held in memory by the parser, and by the agent that runs it).
DEFAULT_MAX_UPDATE_BYTES = 16 * 1024 * 1024
# The agent's own ceiling: above what the control plane accepts by default, below what hurts a data server.
AGENT_MAX_UPDATE_BYTES = 256 * 1024 * 1024
# Brackets open at once ({, (, [), and terms in one operation outside data blocks (INSERT DATA,
# DELETE DATA, VALUES). Measured on pyoxigraph 0.5 with an 8 MiB stack: nesting overflows at
# about 2,100 groups, chains of terms at about 9,000; these leave a wide margin for threads.
MAX_NESTING = 64
MAX_OPERATION_TERMS = 2000
AGENT_GRAPH_PREFIX = "urn:x-dms-update:"


class UnsafeContent(ValueError):
    """Content a data server must not run or parse; `code` names the rule, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# SPARQL's lexical forms that may hold brackets, quotes or `#` without meaning them: one
# definition, read alike by this screen and by the agent's update scope (dmsupdate.agent.update_scope).
SPARQL_IRI = r"""<[^<>"{}|^`\\\x00-\x20]*>"""
SPARQL_STRING = (
    r'''"""(?:[^"\\]|\\.|"(?!""))*"""'''
    r"""|'''(?:[^'\\]|\\.|'(?!''))*'''"""
    r'''|"(?:[^"\\\n\r]|\\.)*"'''
    r"""|'(?:[^'\\\n\r]|\\.)*'"""
)
SPARQL_COMMENT = r"\#[^\n\r]*"

# Outside strings, `\` and the character after it stay together: in an update the engine
# accepts, that is only a prefixed name's escape (`ex:o\'`), which it reads as part of the
# name, not as the start of a string.
_TOKEN = re.compile(
    rf"""
    (?P<space>\s+)
  | (?P<comment>{SPARQL_COMMENT})
  | (?P<string>{SPARQL_STRING})
  | (?P<iri>{SPARQL_IRI})
  | (?P<name>[?$]\w+|_:[\w.-]+|(?:[A-Za-z][\w.-]*)?:(?:[^\s{{}}()\[\];,<>"'\#\\]|\\.)*|@[A-Za-z]+(?:-[A-Za-z0-9]+)*)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<open>[{{(\[])
  | (?P<close>[}})\]])
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# A run of a data block's content up to its next bracket, in one match (strings, IRIs and
# comments read as _TOKEN reads them): the triples of INSERT DATA, DELETE DATA and VALUES
# need no Python step each. No keyword inside a data block can run: the engine refuses one.
_DATA_RUN = re.compile(
    rf"""(?:\s+|{SPARQL_COMMENT}|{SPARQL_STRING}|{SPARQL_IRI}|\\.|[^\s{{}}()\[\]"'\#<\\]+|<)+""",
    re.VERBOSE | re.DOTALL,
)
_ALL_GRAPHS = {"ALL", "NAMED", "DEFAULT"}


def check_sparql_update(text: str, allow_drop_all: bool = True) -> None:
    """Refuse an update that fetches URLs, drops every graph (unless allowed) or is too deep for the engine.

    A lexical pass (strings, IRIs and comments skipped, as SPARQL's own
    tokens): a keyword counts only where the parser would read it as one.
    Raises UnsafeContent.
    """
    depth = 0
    terms = 0
    data_depth: int | None = None  # depth of the data block being read, if any
    data_next = False  # the next `{` opens a data block (after DATA or VALUES)
    previous: list[str] = []  # the last two keywords, for DROP/CLEAR [SILENT] ALL
    pos, end = 0, len(text)
    while pos < end:
        if data_depth is not None:
            run = _DATA_RUN.match(text, pos)
            if run is not None:
                pos = run.end()
                if pos >= end:
                    break
        match = _TOKEN.match(text, pos)
        assert match is not None  # `other` takes any one character
        pos = match.end()
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        value = match.group()
        if kind == "open":
            depth += 1
            if depth > MAX_NESTING:
                raise UnsafeContent(
                    "too_deep", f"the update nests more than {MAX_NESTING} brackets deep; refused"
                )
            if value == "{" and data_next and data_depth is None:
                data_depth, data_next = depth, False
        elif kind == "close":
            if data_depth is not None and depth == data_depth:
                data_depth = None
            depth = max(0, depth - 1)
        elif kind == "word":
            word = value.upper()
            if word in ("LOAD", "SERVICE"):
                raise UnsafeContent(
                    "fetches_urls",
                    f"{word} makes data servers fetch URLs; refused (publish the data itself instead)",
                )
            if word in _ALL_GRAPHS and not allow_drop_all and _drops_all(previous):
                raise UnsafeContent(
                    "drop_all",
                    f"{' '.join(previous[-2:]).replace('SILENT ', '')} {word} removes every graph, "
                    "and this dataset does not allow it",
                )
            if word in ("DATA", "VALUES"):
                data_next = True
            previous = [*previous[-1:], word]
        elif value == ";" and depth == 0:
            terms = 0
            continue
        if data_depth is None:
            terms += 1
            if terms > MAX_OPERATION_TERMS:
                raise UnsafeContent(
                    "too_long",
                    f"one operation of the update holds more than {MAX_OPERATION_TERMS} terms outside "
                    "INSERT DATA, DELETE DATA and VALUES blocks; split it into several operations",
                )


def _drops_all(previous: list[str]) -> bool:
    return bool(previous) and (
        previous[-1] in ("DROP", "CLEAR") or previous[-2:] in (["DROP", "SILENT"], ["CLEAR", "SILENT"])
    )


_DECLARATION = re.compile(rb"<!(?:doctype|entity)", re.IGNORECASE)
_OVERLAP = len(b"<!doctype") - 1


class XmlDeclarationScreen:
    """Refuses RDF/XML holding a DTD or entity declaration, fed chunk by chunk (a chunk may split a tag).

    The whole document is screened, not just its prolog: the RDF/XML parser
    also honours a DOCTYPE after the root element. A `<!DOCTYPE` inside a
    comment or CDATA section is refused too (no RDF/XML needs one).
    """

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        """Raise UnsafeContent when the text seen so far holds a declaration."""
        window = self._tail + chunk
        if _DECLARATION.search(window):
            raise UnsafeContent(
                "xml_declarations",
                "RDF/XML with a DTD or entity declarations (<!DOCTYPE, <!ENTITY) is refused: "
                "entities can expand without bound or read local files",
            )
        self._tail = window[-_OVERLAP:]


def check_rdfxml(body: bytes) -> None:
    """Refuse an RDF/XML document (whole in memory) that holds a DTD or entity declaration."""
    XmlDeclarationScreen().feed(body)


def check_graph_iri(value: str) -> ox.NamedNode:
    """The graph name as the agent will use it; UnsafeContent when it is not an absolute IRI or is the agent's own."""
    try:
        node = ox.NamedNode(value)
    except ValueError as exc:
        raise UnsafeContent("invalid_graph", f"graph {value!r} is not an absolute IRI: {exc}") from exc
    if value.startswith(AGENT_GRAPH_PREFIX):
        raise UnsafeContent(
            "invalid_graph", f"graph {value!r} is in {AGENT_GRAPH_PREFIX}, the agent's own bookkeeping graphs"
        )
    return node
