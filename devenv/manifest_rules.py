"""The value rules Spin applies while reading a spin.toml: identifier shapes, outbound host
patterns, ``{{ variable }}`` templates and the old ``allowed_http_hosts`` list.

Each check returns the reason a value is wrong (``None`` when it is fine) in Spin's own words, so
a user who searches for the message finds Spin's documentation. The manifest reader turns the
reason into a ``ManifestError`` naming the file and key; nothing here knows about files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

ALLOW_ALL_HOSTS = "insecure:allow-all"

# Ports Spin fills in when an allowed host names no port (outbound-networking-config).
WELL_KNOWN_PORTS = {
    "postgres": 5432,
    "mysql": 3306,
    "redis": 6379,
    "mqtt": 1883,
    "http": 80,
    "https": 443,
}

# What the WHATWG URL parser (Rust's `url::Host::parse`) refuses in a domain.
_FORBIDDEN_HOST_CHARS = set(" \t\n\r#%/:<>?@[\\]^|\x00")


# ---------------------------------------------------------------------------------------------
# Identifiers: component ids are kebab-case, variable names lower_snake_case
# ---------------------------------------------------------------------------------------------


def _rust_char(ch: str) -> str:
    """A char as Rust's `{:?}` prints it, so messages match Spin's ('_', not "_")."""
    return "'\\''" if ch == "'" else f"'{ch}'"


def id_problem(value: str, delim: str, lower: bool = False) -> str | None:
    """Why ``value`` is not a Spin id with words separated by ``delim``; None if it is one.

    Mirrors spin_serde's ``Id<DELIM, LOWER>``: non-empty words of ASCII letters and digits, each
    starting with a letter and all lowercase or all UPPERCASE (only lowercase when ``lower``).
    """
    if not value:
        return "empty"
    wrong = {"-": "_", "_": "-"}.get(delim)
    if wrong and wrong in value:
        return f"words must be separated with {_rust_char(delim)}, not {_rust_char(wrong)}"
    for word in value.split(delim):
        if not word:
            return f"{_rust_char(delim)}-separated words must not be empty"
        first = word[0]
        if not (first.isascii() and first.isalpha()):
            return f"{_rust_char(delim)}-separated words must start with an ASCII letter; got {_rust_char(first)}"
        upper = first.isupper()
        for ch in word[1:]:
            if ch.isascii() and ch.isdigit():
                continue
            if not (ch.isascii() and ch.isalnum()):
                return f"{_rust_char(delim)}-separated words may only contain alphanumeric ASCII; got {_rust_char(ch)}"
            if ch.isupper() != upper:
                return f'{_rust_char(delim)}-separated words must be all lowercase or all UPPERCASE; got "{word}"'
        if lower and upper:
            return f'Lower-case identifiers must be all lowercase; got "{value}"'
    return None


def kebab_problem(value: str) -> str | None:
    return id_problem(value, "-")


def lower_snake_problem(value: str) -> str | None:
    return id_problem(value, "_", lower=True)


def kebab_from_legacy_id(value: str) -> str:
    """Spin's v1 → v2 fix-up of component ids: snake_case and mixedCase become kebab-case."""
    if kebab_problem(value) is None:
        return value
    return value.replace("_", "-").lower()


# ---------------------------------------------------------------------------------------------
# Templates: "https://{{ api_host }}"
# ---------------------------------------------------------------------------------------------


def split_template(template: str) -> list[tuple[bool, str]] | str:
    """The template's parts as (is_expression, text), or the reason it cannot be parsed.

    Mirrors spin_expressions::Template::new: ``{{`` opens an expression that runs to the next
    ``}}``; there is no escaping.
    """
    parts: list[tuple[bool, str]] = []
    rest = template
    while rest:
        if rest.startswith("{{"):
            expr, sep, after = rest[2:].partition("}}")
            if not sep:
                return "unmatched '{{' in template"
            parts.append((True, expr.strip()))
            rest = after
        else:
            idx = rest.find("{{")
            lit, rest = (rest, "") if idx < 0 else (rest[:idx], rest[idx:])
            parts.append((False, lit))
    return parts


def resolve_with_defaults(parts: Sequence[tuple[bool, str]], defaults: Mapping[str, str]) -> str | None:
    """The template with every variable replaced by its default; None when one has no default
    (Spin then cannot check the value until runtime, so neither do we)."""
    out = []
    for is_expr, text in parts:
        if not is_expr:
            out.append(text)
        elif text in defaults:
            out.append(defaults[text])
        else:
            return None
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# allowed_outbound_hosts: "scheme://host[:port]", with '*' wildcards
# ---------------------------------------------------------------------------------------------


def _host_problem(host: str) -> str | None:
    host = host.strip()
    if host in ("*", "self", "self.alt"):
        return None
    if host.startswith("{"):
        return "host lists are not yet supported"
    if _is_cidr_or_ip(host):
        return None
    if host.endswith("/"):
        host = host[:-1]
    if "/" in host:
        return "must not include a path"
    if host.startswith("*."):
        domain = host[2:]
        if "*" in domain:
            return "wildcards are allowed only as prefixes"
        reason = _domain_problem(domain)
        if reason:
            return f'invalid wildcard host "*.{domain}": {reason}'
        return None
    if "*" in host:
        return "wildcards are allowed only as subdomains"
    return _domain_problem(host)


def _is_cidr_or_ip(host: str) -> bool:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_network(candidate, strict=False)
    except ValueError:
        return False
    return True


def _domain_problem(domain: str) -> str | None:
    if not domain:
        return "empty host"
    if any(ch in _FORBIDDEN_HOST_CHARS for ch in domain):
        return "invalid international domain name"
    try:
        domain.encode("idna")
    except UnicodeError:
        return "invalid international domain name"
    return None


def _port_problem(port: str, scheme: str) -> str | None:
    if not port:
        if scheme == "*" or scheme not in WELL_KNOWN_PORTS:
            return f'no port was provided and the scheme "{scheme}" does not have a known default port number'
        return None
    if port == "*":
        return None
    if port.startswith("{"):
        return "port lists are not yet supported"
    bounds = port.split("..", 1)
    for bound in bounds:
        if not bound.isdigit() or int(bound) > 65535:
            return (
                f'port "{port}" is not a number'
                if len(bounds) == 1
                else f'port range "{port}" contains non-number'
            )
    return None


def allowed_host_problem(entry: str) -> str | None:
    """Why ``entry`` is not a valid (literal) allowed outbound host; None if it is.

    Mirrors AllowedHostConfig::parse in Spin's outbound-networking-config.
    """
    url = entry.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        if url in ("*", ":", "", "?"):
            return (
                f'"{url}" is not an allowed outbound host format. Hosts must be in the form '
                "<scheme>://<host>[:<port>], with '*' wildcards allowed for each. If you intended to "
                "allow all outbound networking, you can use '*://*:*'"
            )
        return f"\"{url}\" does not contain a scheme (e.g., 'http://' or '*://')"
    host, port = rest, ""
    if ":" in rest:
        head, _, tail = rest.rpartition(":")
        if tail == "":
            host = head
        elif _host_problem(rest) is not None:
            port_part, slash, path = tail.partition("/")
            if slash and path:
                return f'"{url}" has a path but is not allowed to'
            host, port = head, port_part
    reason = _port_problem(port, scheme)
    if reason:
        return f'Invalid allowed host port "{port}": {reason}'
    if scheme != "*":
        if scheme.startswith("{"):
            return f'Invalid allowed host scheme "{scheme}": scheme lists are not supported'
        if not scheme or not scheme.isalpha():
            return f'Invalid allowed host scheme "{scheme}": only alphabetic characters are allowed'
    reason = _host_problem(host)
    if reason:
        return f'Invalid allowed host "{host.strip()}": {reason}'
    return None


def outbound_hosts_problem(hosts: Sequence[str], defaults: Mapping[str, str]) -> tuple[int, str] | None:
    """The first bad entry of ``allowed_outbound_hosts`` as (index, reason), or None.

    Entries with ``{{ var }}`` templates are checked after filling in the variables' defaults,
    and skipped when a variable has none, as Spin's loader does.
    """
    if len(hosts) == 1 and hosts[0] == ALLOW_ALL_HOSTS:
        return (
            0,
            "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic",
        )
    for index, host in enumerate(hosts):
        parts = split_template(host)
        if isinstance(parts, str):
            return index, parts
        if all(not is_expr for is_expr, _ in parts):
            reason = allowed_host_problem(host)
            if reason:
                return index, reason
            continue
        resolved = resolve_with_defaults(parts, defaults)
        if resolved is None or resolved in ("", "http://", "https://"):
            continue  # an empty default means "no endpoint": Spin skips it
        reason = allowed_host_problem(resolved)
        if reason:
            template = "".join(f"{{{{ {t} }}}}" if e else t for e, t in parts)
            return index, (
                f'using default variable value(s) with template "{template}" results in invalid config '
                f'"{resolved}": {reason}'
            )
    return None


# ---------------------------------------------------------------------------------------------
# allowed_http_hosts (deprecated): "host[:port]" → allowed_outbound_hosts entries
# ---------------------------------------------------------------------------------------------


def _parse_http_host(text: str) -> tuple[str, int | None] | str:
    schemed = "//" in text
    if schemed:
        try:
            parsed = urlsplit(text)
        except ValueError as exc:
            return f"{text} isn't a valid HTTP host URL: {exc}"
        if parsed.scheme not in ("http", "https"):
            return f"{text} isn't a valid host or host:port string"
    else:
        try:
            parsed = urlsplit(f"http://{text}")
        except ValueError:
            return f"{text} isn't a valid host or host:port string"
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return f"{text} isn't a valid host or host:port string"
    if not host or _domain_problem(host) and not _is_cidr_or_ip(host):
        return (
            f"{text} isn't a valid host or host:port string"
            if not schemed
            else f"{text} doesn't contain a host name"
        )
    if len(parsed.path) > 1 or parsed.query or parsed.fragment:
        return f"{text} contains a path, should be host and optional port only"
    return host, port


def convert_allowed_http_hosts(entries: Sequence[str], allow_database_access: bool) -> list[str] | str:
    """Spin's compat conversion of ``allowed_http_hosts`` to ``allowed_outbound_hosts``.

    Returns the new entries, or every problem joined in Spin's message. Before
    ``allowed_outbound_hosts`` existed, components could reach any database, so a v1 component
    without the new key keeps that (``allow_database_access``).
    """
    out = ["redis://*:*", "mysql://*:*", "postgres://*:*"] if allow_database_access else []
    if ALLOW_ALL_HOSTS in entries:
        return [*out, "http://*:*", "https://*:*", "http://self"]
    errors = []
    for entry in entries:
        parsed = _parse_http_host(entry)
        if isinstance(parsed, str):
            errors.append(parsed)
            continue
        host, port = parsed
        if host == "self":
            out.append("http://self")
        else:
            suffix = f":{port}" if port is not None else ""
            out += [f"http://{host}{suffix}", f"https://{host}{suffix}"]
    if errors:
        return "One or more allowed_http_hosts entries was invalid:\n" + "\n".join(errors)
    return out
