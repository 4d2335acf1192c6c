"""PII masking: e-mail addresses, phone numbers and IP addresses become `<EMAIL>`, `<PHONE>`, `<IP_ADDRESS>`.

Deliberately conservative so code and prose survive: placeholder domains (example.com/org/net, localhost) and
private, loopback, link-local, reserved and documentation IP ranges are not personal and are kept, and so are
single-digit dotted quads (version numbers like 1.5.1.1); phone numbers
need an international prefix or the 3-3-4 / 2-4-4 grouping with separators (dates and versions do not match)."""

from __future__ import annotations

import ipaddress
import re

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![\w-])")
PHONE = re.compile(
    r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?[ .-]\d{2,4}[ .-]\d{3,4}"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{3}[ .-]\d{4}|0\d{1,3}-\d{2,4}-\d{4})(?![\w.-])"
)
IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w|\.\d)")
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])")
# Cheap supersets of the patterns above (each starts with a literal or a character class, which `re` scans for
# in C): most documents match none, and the slower full patterns then never run on them.
PREFILTER = {
    "email": re.compile(r"@[A-Za-z0-9-]+\.[A-Za-z]"),
    "ip4": re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d"),
    "ip6": re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"),
    "phone": re.compile(r"[\d)][ .-]?\d{2,4}[ .-]\d{3,4}"),
}
SAFE_DOMAINS = ("example.com", "example.org", "example.net", "localhost", "python.org", "test", "invalid")


def _email(m: re.Match) -> str:
    domain = m.group(0).rsplit("@", 1)[1].lower()
    return m.group(0) if domain.endswith(SAFE_DOMAINS) else "<EMAIL>"


def _ip(m: re.Match) -> str:
    if "." in m.group(0) and all(len(o) == 1 for o in m.group(0).split(".")):
        return m.group(0)  # 1.5.1.1: a version number far more often than a host
    try:
        ip = ipaddress.ip_address(m.group(0))
    except ValueError:
        return m.group(0)
    if ip.is_private or ip.is_loopback or ip.is_reserved or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return m.group(0)
    return "<IP_ADDRESS>"


def mask(text: str) -> tuple[str, dict[str, int]]:
    """(masked text, {kind: count}) for kind in email, phone, ip."""
    counts: dict[str, int] = {}
    for kind, pre, pattern, repl in (
        ("email", "email", EMAIL, _email),
        ("ip", "ip4", IPV4, _ip),
        ("ip", "ip6", IPV6, _ip),
        ("phone", "phone", PHONE, lambda m: "<PHONE>"),
    ):
        if not PREFILTER[pre].search(text):
            continue
        new, n = _sub(pattern, repl, text)
        if n:
            counts[kind] = counts.get(kind, 0) + n
            text = new
    return text, counts


def _sub(pattern: re.Pattern, repl, text: str) -> tuple[str, int]:
    """re.subn, counting only the matches that were actually replaced."""
    changed = 0

    def fn(m: re.Match) -> str:
        nonlocal changed
        out = repl(m)
        changed += out != m.group(0)
        return out

    return pattern.sub(fn, text), changed
