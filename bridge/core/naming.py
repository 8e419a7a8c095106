"""Chroma collection names: one per route and commit, always valid, never longer than 128 bytes.

A route's ``collection`` template names the collection a push is indexed into, for example the default
``{owner}-{repo}-{branch}-{sha12}``. Placeholders:

=============== ===============================================================================
``{owner}``     the repository owner (``acme``)
``{repo}``      the repository name (``api``)
``{repository}``owner and name joined by ``.`` (``acme.api``): GitHub owner names never contain ``.``,
                so this one placeholder tells ``acme-x/api`` from ``acme/x-api``
``{branch}``    the branch name (``release/1.2`` becomes ``release-1.2-<hash8>``, see below)
``{sha}``       the full commit id; ``{sha12}`` and ``{sha7}`` are its first 12 and 7 characters
``{route}``     the route's fingerprint (``Route.name``): tells apart routes that match the same push
=============== ===============================================================================

Every template must use ``{sha}``, ``{sha12}`` or ``{sha7}``: a collection holds exactly one commit.
Literal text in a template may use only ``[A-Za-z0-9._-]`` and must not contain ``..``; a template must
not start or end with ``.``, ``_`` or ``-``.

What Chroma accepts (open-source Chroma allows 512 characters, Chroma Cloud 128 bytes; the bridge keeps
to the smaller): 3 to 128 characters from ``[A-Za-z0-9._-]``, starting and ending with a letter or digit,
no ``..``, not an IPv4 address. ``collection_name`` gets there in two steps, each of which keeps names
apart:

1. **Values.** A value already made of allowed characters (no ``..``; for ``{owner}`` also no ``.``)
   is used as it is. Any other value is mapped: compatibility-decomposed (``ü`` becomes ``u``), each run
   of other characters becomes ``-``, runs of ``-`` and ``.`` collapse, edges are trimmed, and
   ``-`` plus 8 hex of the SHA-256 of the *original* value is appended. So ``feat/x`` gives
   ``feat-x-<hash8>`` while ``feat-x`` stays ``feat-x``: two branches that map to the same text
   still give different names.
2. **The whole name.** If the rendered text is a valid name it is the name. Otherwise (an edge that is
   not a letter or digit, a ``..`` where literal text meets a value, or more than 128 bytes) the text is
   cleaned (``..`` collapsed, edges trimmed) and ``-`` plus 8 hex of the SHA-256 of the rendered text is
   appended; when that is still too long, the text is cut to ``prefix-<sha12>-<hash8>`` (``<sha7>`` for
   a template that uses only ``{sha7}``), so the commit stays readable.

A template always renders at least 7 hex characters of the commit as one dot-free run, so a rendered
name is never shorter than 3 characters nor an IPv4 address: neither needs a repair.

**Uniqueness.** Names are deterministic. For one repository (fixed owner and name), two inputs that
differ in the branch, the commit (as far as the template shows it: ``{sha12}`` shows 12 hex digits) or
the route (when the template uses ``{route}``) give different names, short of a 32-bit hash collision or
a branch deliberately named after another branch's mapped form. Adjacent free-text placeholders are not
delimited, though: ``{owner}-{repo}`` renders ``acme-x/api`` and ``acme/x-api`` alike, and
``{repo}-{branch}`` renders ``api-v2``@``main`` and ``api``@``v2-main`` alike; such names meet only when
both repositories hold the same commit and write into the same Chroma database. Templates that omit
``{route}`` give every route that matches a push the same name: two such routes must not write into
the same database.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
import unicodedata

from bridge.core.errors import ConfigError

DEFAULT_COLLECTION_TEMPLATE = "{owner}-{repo}-{branch}-{sha12}"
PLACEHOLDERS = ("owner", "repo", "repository", "branch", "sha", "sha12", "sha7", "route")
MAX_NAME_BYTES = 128  # Chroma Cloud's limit; open-source Chroma allows 512

_SHA_PLACEHOLDERS = frozenset({"sha", "sha12", "sha7"})
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_LITERAL = re.compile(r"[A-Za-z0-9._-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 object ids

_CLEAN_VALUE = re.compile(r"[A-Za-z0-9._-]*")
_CLEAN_OWNER = re.compile(r"[A-Za-z0-9_-]*")  # no "." so that {repository} stays decodable
_OTHER_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_OTHER_OWNER = re.compile(r"[^A-Za-z0-9_-]+")
_DASHES = re.compile(r"-{2,}")
_DOTS = re.compile(r"\.{2,}")
_EDGES = "-._"

_Piece = tuple[str, str | None]  # literal text, then a placeholder name or None


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


@functools.lru_cache(maxsize=1024)
def _parse(template: str) -> tuple[_Piece, ...]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"collection template {template!r} has unbalanced braces") from exc
    pieces: list[_Piece] = []
    for literal, field, spec, conversion in parsed:
        if not _LITERAL.fullmatch(literal):
            raise ConfigError(
                f"collection template {template!r} has literal text {literal!r}: "
                "only letters, digits, '.', '_' and '-' are allowed"
            )
        if field is not None:
            if field not in PLACEHOLDERS:
                raise ConfigError(
                    f"collection template {template!r} uses unknown placeholder {{{field}}} "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
                )
            if spec or conversion:
                raise ConfigError(
                    f"collection template {template!r}: placeholder {{{field}}} takes no format "
                    "spec or conversion"
                )
        pieces.append((literal, field))
    fields = {field for _, field in pieces}
    if not fields & _SHA_PLACEHOLDERS:
        raise ConfigError(
            f"collection template {template!r} must contain {{sha}}, {{sha12}} or {{sha7}} "
            "(one collection per commit)"
        )
    if any(".." in literal for literal, _ in pieces):
        raise ConfigError(f"collection template {template!r} contains '..'")
    first, last = pieces[0], pieces[-1]
    if (first[0] and first[0][0] in _EDGES) or (last[1] is None and last[0][-1] in _EDGES):
        raise ConfigError(
            f"collection template {template!r} must start and end with a letter, a digit or a placeholder"
        )
    return tuple(pieces)


def validate_template(template: str) -> None:
    """Raise ``ConfigError`` naming what is wrong with a collection name template.

    Wrong are: unbalanced braces, an unknown placeholder (or one with a format spec, a conversion, an
    attribute or an index), no ``{sha}``/``{sha12}``/``{sha7}``, literal characters outside
    ``[A-Za-z0-9._-]``, a literal ``..``, or literal text that starts or ends with ``.``, ``_`` or ``-``.
    """
    _parse(template)


def is_valid_collection_name(name: str) -> bool:
    """Whether Chroma (Cloud) accepts ``name`` as a collection name."""
    return (
        3 <= len(name.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES
        and _NAME.fullmatch(name) is not None
        and ".." not in name
        and _IPV4.fullmatch(name) is None
    )


def _map_value(value: str, *, clean: re.Pattern[str], other: re.Pattern[str]) -> str:
    """``value`` itself when Chroma accepts its characters, else a mapped form with a hash of it."""
    if clean.fullmatch(value) and ".." not in value:
        return value
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    mapped = _DOTS.sub(".", _DASHES.sub("-", other.sub("-", decomposed))).strip(_EDGES)
    return f"{mapped}-{_hash8(value)}" if mapped else _hash8(value)


# The ingress names a collection for every job, and owners, repositories, branches and route names repeat:
# their mapped forms are remembered (bounded), not recomputed with four regular expressions per push.
@functools.lru_cache(maxsize=8192)
def _map_owner(value: str) -> str:
    return _map_value(value, clean=_CLEAN_OWNER, other=_OTHER_OWNER)


@functools.lru_cache(maxsize=8192)
def _map_plain(value: str) -> str:
    return _map_value(value, clean=_CLEAN_VALUE, other=_OTHER_VALUE)


def collection_name(template: str, *, owner: str, repo: str, branch: str, sha: str, route: str) -> str:
    """The Chroma collection name for one push and one route (see the module docstring).

    ``sha`` is the 40-hex commit id (64 hex for SHA-256 repositories); ``route`` is ``Route.name``.
    Raises ``ConfigError`` for an invalid template and ``ValueError`` for a ``sha`` that is not a
    lower-case hex commit id.
    """
    pieces = _parse(template)
    if not _COMMIT.fullmatch(sha):
        raise ValueError(f"not a lower-case hex commit id: {sha[:80]!r}")
    values = {
        "owner": _map_owner(owner),
        "repo": _map_plain(repo),
        "branch": _map_plain(branch),
        "sha": sha,
        "sha12": sha[:12],
        "sha7": sha[:7],
        "route": _map_plain(route),
    }
    values["repository"] = f"{values['owner']}.{values['repo']}"
    rendered = "".join(literal + (values[field] if field else "") for literal, field in pieces)
    if is_valid_collection_name(rendered):
        return rendered
    suffix = _hash8(rendered)
    cleaned = _DOTS.sub(".", rendered).strip(_EDGES)  # never empty: the commit's hex digits remain
    if len(cleaned) + 1 + len(suffix) <= MAX_NAME_BYTES:
        return f"{cleaned}-{suffix}"
    fields = {field for _, field in pieces}
    commit = sha[:7] if fields & _SHA_PLACEHOLDERS == {"sha7"} else sha[:12]
    tail = f"-{commit}-{suffix}"
    return cleaned[: MAX_NAME_BYTES - len(tail)].rstrip(_EDGES) + tail
