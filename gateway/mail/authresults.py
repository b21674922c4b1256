"""RFC 8601 Authentication-Results: the SPF, DKIM and DMARC results of our own border MTA.

Anyone can write an Authentication-Results header, so only headers whose authserv-id is
in `trusted_ids` count (compared case-insensitively). Headers are read top down (the
order of `ParsedMail.authentication_results`, nearest to us first): untrusted headers
above the first trusted one are skipped, and the trusted headers that follow it without
an untrusted one between them are read together. A border MTA often writes one header
per check (Postfix with OpenDKIM and OpenDMARC, Fastmail), so reading only the topmost
one would lose results; a trusted id below an untrusted header is not read at all
(someone upstream may have written it). Each method is taken from the first header of
that group that reports it, so a later header cannot override what the topmost said.

Microsoft 365 writes its header without an authserv-id (`spf=pass (...) smtp.mailfrom=`
at the start); such a header gets the authserv-id "" and counts only when "" is in
`trusted_ids`.

Parsing is lenient and never raises: comments (nested) are dropped, quoted strings
are unquoted, a result segment that cannot be read is skipped, and unknown methods
(arc, iprev, auth, compauth, x-...) and unknown properties are ignored. A header whose
authserv-id cannot be read counts as untrusted.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

_METHODS = ("spf", "dkim", "dmarc")
# RFC 5451 allowed "hardfail" as a synonym of "fail" for SPF.
_RESULT_SYNONYMS = {"hardfail": "fail"}

_QUOTED = r'"(?:[^"\\]|\\.)*"'
# authserv-id [version]: a token or a quoted string, optionally followed by digits.
_AUTHSERV_ID = re.compile(rf'\s*({_QUOTED}|[^\s"=]+)(?:\s+\d+)?\s*', re.DOTALL)
# key = value, where value runs to the next space unless quoted (SRS senders hold "=").
_PAIR = re.compile(rf'\s*([^\s="]+)\s*=\s*({_QUOTED}|[^\s"]*)', re.DOTALL)
# Whatever is not a pair: one word or one quoted string, skipped.
_OTHER = re.compile(rf'\s*(?:{_QUOTED}|"[^"]*|[^\s"]+)', re.DOTALL)
_KEYWORD = re.compile(r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_DOMAIN = re.compile(r"[^\s@<>()\"\\,;]+")


@dataclass(frozen=True)
class AuthResults:
    """What the trusted authserv-id found; results are lower-case RFC 8601 keywords
    (pass, fail, softfail, neutral, none, temperror, permerror, policy; a producer's own
    keyword, such as Microsoft's bestguesspass, is kept as written)."""

    authserv_id: str
    spf: str | None
    dkim: str | None  # pass if any signature passed, else the first result
    dmarc: str | None
    dkim_domains: tuple[str, ...]  # header.d (or the domain of header.i) of passing signatures
    spf_domain: str | None  # the domain of smtp.mailfrom, else smtp.helo
    dmarc_domain: str | None  # header.from

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready values (dkim_domains as a list)."""
        values = asdict(self)
        values["dkim_domains"] = list(self.dkim_domains)
        return values


@dataclass(frozen=True)
class _Result:
    method: str
    result: str
    properties: dict[str, str]


@dataclass(frozen=True)
class _Header:
    authserv_id: str
    results: tuple[_Result, ...]


def _segments(value: str) -> list[str]:
    """The value split at top-level semicolons, comments dropped, quoted strings kept."""
    segments: list[str] = []
    current: list[str] = []
    depth = 0  # comment nesting
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if not depth:
                current.append(char)
        elif char == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                current.append(char)
        elif depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
        elif quoted:
            quoted = char != '"'
            current.append(char)
        elif char == "(":
            depth = 1
            current.append(" ")
        elif char == ";":
            segments.append("".join(current))
            current = []
        else:
            quoted = char == '"'
            current.append(char)
    segments.append("".join(current))
    return segments


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    return value


def _pairs(text: str, pos: int = 0) -> Iterator[tuple[str, str]]:
    """The `key=value` pairs in text from pos on; anything else is skipped."""
    while pos < len(text):
        pair = _PAIR.match(text, pos)
        if pair is not None:
            yield pair[1].lower(), _unquote(pair[2]).strip()
            pos = pair.end()
            continue
        other = _OTHER.match(text, pos)
        if other is None:  # only whitespace is left
            return
        pos = other.end()


def _result(segment: str) -> _Result | None:
    """One `method[/version]=result property=value ...` segment, or None."""
    spec = _PAIR.match(segment)
    if spec is None:
        return None
    method = spec[1].split("/", 1)[0].lower()
    result = spec[2].lower()
    if not _KEYWORD.fullmatch(method) or not _KEYWORD.fullmatch(result):
        return None
    properties: dict[str, str] = {}
    for key, value in _pairs(segment, spec.end()):
        properties.setdefault(key, value)
    return _Result(method, _RESULT_SYNONYMS.get(result, result), properties)


def _header(value: str) -> _Header | None:
    """One header value, or None when its authserv-id cannot be read."""
    segments = _segments(value)
    first = segments[0]
    if _PAIR.match(first) is not None and _result(first) is not None:
        authserv_id = ""  # Microsoft 365: no authserv-id, the results start at once
    else:
        found = _AUTHSERV_ID.fullmatch(first)
        if found is None:
            return None
        authserv_id = _unquote(found[1]).strip().lower()
        segments = segments[1:]
    results = (_result(segment) for segment in segments)
    return _Header(authserv_id, tuple(r for r in results if r is not None))


def _trusted_group(values: Iterable[str], trusted: frozenset[str]) -> list[_Header]:
    """The first trusted header and the trusted headers right below it."""
    group: list[_Header] = []
    for value in values:
        header = _header(value) if isinstance(value, str) else None
        if header is not None and header.authserv_id in trusted:
            group.append(header)
        elif group:
            break
    return group


def _results_of(group: Sequence[_Header], method: str) -> list[_Result]:
    """The results for a method from the first header of the group that has any."""
    for header in group:
        found = [r for r in header.results if r.method == method]
        if found:
            return found
    return []


def _domain(value: str | None) -> str | None:
    """The domain of an address or a bare domain, lower-case; None when there is none."""
    if not value:
        return None
    domain = value.strip().strip("<>").rpartition("@")[2].strip().rstrip(".").lower()
    return domain if _DOMAIN.fullmatch(domain) else None


def _dkim(results: list[_Result]) -> tuple[str | None, tuple[str, ...]]:
    passed = [r for r in results if r.result == "pass"]
    domains = (
        _domain(r.properties.get("header.d")) or _domain(r.properties.get("header.i"))
        for r in passed
    )
    best = "pass" if passed else (results[0].result if results else None)
    return best, tuple(dict.fromkeys(d for d in domains if d))


def _combine(group: Sequence[_Header]) -> AuthResults:
    spf, dkim, dmarc = (_results_of(group, method) for method in _METHODS)
    dkim_result, dkim_domains = _dkim(dkim)
    spf_properties = spf[0].properties if spf else {}
    return AuthResults(
        authserv_id=group[0].authserv_id,
        spf=spf[0].result if spf else None,
        dkim=dkim_result,
        dmarc=dmarc[0].result if dmarc else None,
        dkim_domains=dkim_domains,
        spf_domain=_domain(spf_properties.get("smtp.mailfrom"))
        or _domain(spf_properties.get("smtp.helo")),
        dmarc_domain=_domain(dmarc[0].properties.get("header.from")) if dmarc else None,
    )


def parse_authentication_results(
    values: Iterable[str], trusted_ids: Collection[str]
) -> AuthResults | None:
    """What the trusted authserv-id found (values topmost first); None when no header
    of a trusted authserv-id can be read."""
    trusted = frozenset(str(t).strip().lower() for t in trusted_ids)
    group = _trusted_group(values, trusted)
    return _combine(group) if group else None
