"""Licence audit: SPDX ids, their classes (OSI code licence, open data licence, open document licence,
non-commercial or restrictive), and the verdict for a component of a given kind (code, data, document).

The rules are the Model Openness Framework's: code under an OSI licence; data (data sets, evaluation data, weights,
optimizer state) under an open data licence (CDLA-Permissive-2.0, CC0-1.0, PDDL-1.0 best; CC-BY, CC-BY-SA, ODC-By
accepted), where an OSI licence passes with a warning because it is open but written for code; documents under
CC-BY-4.0 or similar. Non-commercial, no-derivatives, use-restricted, unknown and missing licences fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["code", "data", "document"]
Verdict = Literal["open", "warning", "fail"]

# id → full name; the OSI-approved licences moxin's users meet in practice.
OSI: dict[str, str] = {
    "Apache-2.0": "Apache License 2.0",
    "MIT": "MIT License",
    "MIT-0": "MIT No Attribution",
    "BSD-2-Clause": 'BSD 2-Clause "Simplified" License',
    "BSD-3-Clause": 'BSD 3-Clause "New" or "Revised" License',
    "0BSD": "BSD Zero Clause License",
    "ISC": "ISC License",
    "Zlib": "zlib License",
    "BSL-1.0": "Boost Software License 1.0",
    "MPL-2.0": "Mozilla Public License 2.0",
    "EPL-2.0": "Eclipse Public License 2.0",
    "UPL-1.0": "Universal Permissive License v1.0",
    "GPL-2.0-only": "GNU General Public License v2.0 only",
    "GPL-2.0-or-later": "GNU General Public License v2.0 or later",
    "GPL-3.0-only": "GNU General Public License v3.0 only",
    "GPL-3.0-or-later": "GNU General Public License v3.0 or later",
    "LGPL-2.1-only": "GNU Lesser General Public License v2.1 only",
    "LGPL-3.0-only": "GNU Lesser General Public License v3.0 only",
    "LGPL-3.0-or-later": "GNU Lesser General Public License v3.0 or later",
    "AGPL-3.0-only": "GNU Affero General Public License v3.0",
    "AFL-3.0": "Academic Free License v3.0",
    "PSF-2.0": "Python Software Foundation License 2.0",
    "Python-2.0": "Python License 2.0",
    "Artistic-2.0": "Artistic License 2.0",
    "ECL-2.0": "Educational Community License v2.0",
    "Unlicense": "The Unlicense",
    "NCSA": "University of Illinois/NCSA Open Source License",
}
# Open data licences: the MOF's preferred ones, then the accepted ones (attribution / share-alike).
DATA_PREFERRED: dict[str, str] = {
    "CDLA-Permissive-2.0": "Community Data License Agreement Permissive 2.0",
    "CDLA-Permissive-1.0": "Community Data License Agreement Permissive 1.0",
    "CC0-1.0": "Creative Commons Zero v1.0 Universal",
    "PDDL-1.0": "Open Data Commons Public Domain Dedication & License 1.0",
    "CC-PDDC": "Creative Commons Public Domain Dedication and Certification",
    "LicenseRef-Public-Domain": "Public domain (copyright expired)",
}
DATA_ACCEPTED: dict[str, str] = {
    "CC-BY-4.0": "Creative Commons Attribution 4.0 International",
    "CC-BY-3.0": "Creative Commons Attribution 3.0 Unported",
    "CC-BY-SA-4.0": "Creative Commons Attribution Share Alike 4.0 International",
    "CC-BY-SA-3.0": "Creative Commons Attribution Share Alike 3.0 Unported",
    "ODC-By-1.0": "Open Data Commons Attribution License v1.0",
    "ODbL-1.0": "Open Data Commons Open Database License v1.0",
    "CDLA-Sharing-1.0": "Community Data License Agreement Sharing 1.0",
    "CC-BY": "Creative Commons Attribution (version not stated by the source)",
    "OpenMDW-1.0": "Open Model, Data & Weights License 1.0",
}
# Open document licences (CC0 and public domain count for documents too).
DOCUMENT: dict[str, str] = {
    **{k: v for k, v in DATA_ACCEPTED.items() if k.startswith("CC-")},
    "CC0-1.0": DATA_PREFERRED["CC0-1.0"],
    "CC-PDDC": DATA_PREFERRED["CC-PDDC"],
    "LicenseRef-Public-Domain": DATA_PREFERRED["LicenseRef-Public-Domain"],
    "FreeBSD-DOC": "FreeBSD Documentation License",
    "GFDL-1.3-or-later": "GNU Free Documentation License v1.3 or later",
    "GFDL-1.3-only": "GNU Free Documentation License v1.3 only",
    "OpenMDW-1.0": DATA_ACCEPTED["OpenMDW-1.0"],
}
# Licences whose terms forbid commercial use, derivatives, or some uses: never open.
RESTRICTED_PATTERN = re.compile(r"(^|-)(NC|ND)(-|$)|RAIL|Llama|Gemma|LicenseRef-Research", re.IGNORECASE)

# Free-text spellings seen in SOURCE.md files and data manifests → SPDX ids.
ALIASES: dict[str, str] = {
    "public domain": "LicenseRef-Public-Domain",
    "pd": "LicenseRef-Public-Domain",
    "psf": "PSF-2.0",
    "psf license": "PSF-2.0",
    "psf license agreement": "PSF-2.0",
    "psf-2.0": "PSF-2.0",
    "apache 2.0": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "mit": "MIT",
    "cc by": "CC-BY",
    "afl-3.0": "AFL-3.0",
    "academic free license v3.0": "AFL-3.0",
    "gfdl": "GFDL-1.3-or-later",
}


def known() -> dict[str, str]:
    return {**OSI, **DATA_PREFERRED, **DATA_ACCEPTED, **DOCUMENT}


def normalise(text: str | None) -> str | None:
    """A licence as written by a person ('CC BY-NC 3.0', 'PSF License', 'public domain') → an SPDX id, or the text
    unchanged when it is not recognised (the audit then fails it as unknown). None/empty → None."""
    if text is None or not str(text).strip():
        return None
    raw = str(text).strip()
    by_lower = {k.lower(): k for k in known()}
    if raw.lower() in by_lower:
        return by_lower[raw.lower()]
    if raw.lower() in ALIASES:
        return ALIASES[raw.lower()]
    cc = re.fullmatch(r"(?i)cc[\s-]+((?:by|nc|sa|nd)(?:[\s-]+(?:by|nc|sa|nd))*)[\s-]+(\d\.\d)", raw)
    if cc:
        parts = re.split(r"[\s-]+", cc.group(1).upper())
        return "CC-" + "-".join(parts) + "-" + cc.group(2)
    return raw


def first_licence_in(text: str) -> str | None:
    """The first licence named in free text (e.g. a SOURCE.md '## License' section)."""
    cc = re.search(r"(?i)\bCC[\s-]+(?:BY|0)(?:[\s-]+(?:NC|SA|ND))*(?:[\s-]+\d\.\d)?", text)
    low = text.lower()
    if cc:
        return normalise(cc.group(0))
    for spelled, spdx in sorted(ALIASES.items(), key=lambda kv: -len(kv[0])):
        if len(spelled) > 3 and spelled in low:
            return spdx
    for spdx in sorted(known(), key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(spdx)}(?![\w-])", text):
            return spdx
    return None


def licence_from_source_md(folder: Path) -> str | None:
    """The licence stated under '## License' in a data folder's SOURCE.md (the shared data convention)."""
    path = Path(folder) / "SOURCE.md"
    if not path.is_file():
        return None
    m = re.search(r"^##\s*Licen[cs]e[^\n]*\n(.*?)(?=^##\s|\Z)", path.read_text("utf-8"), re.MULTILINE | re.DOTALL)
    return first_licence_in(m.group(1)) if m else None


@dataclass(frozen=True)
class Audit:
    licence: str | None  # SPDX id or expression as audited
    verdict: Verdict
    reason: str  # one line: why this verdict

    @property
    def ok(self) -> bool:
        return self.verdict != "fail"


def licence_class(spdx: str) -> str:
    """'restricted', 'data-preferred', 'data-accepted', 'document', 'osi' or 'unknown'."""
    if RESTRICTED_PATTERN.search(spdx):
        return "restricted"
    if spdx in DATA_PREFERRED:
        return "data-preferred"
    if spdx in DATA_ACCEPTED:
        return "data-accepted"
    if spdx in DOCUMENT:
        return "document"
    if spdx in OSI:
        return "osi"
    return "unknown"


def audit_one(spdx: str | None, kind: Kind) -> Audit:
    """Verdict for one SPDX id on a component of `kind` (`X WITH exception` is judged as X)."""
    if spdx and " WITH " in spdx:
        base = audit_one(spdx.split(" WITH ")[0].strip(), kind)
        return Audit(spdx, base.verdict, base.reason)
    if not spdx:
        return Audit(None, "fail", "no licence stated")
    cls = licence_class(spdx)
    if cls == "restricted":
        return Audit(spdx, "fail", f"{spdx} restricts use (non-commercial, no-derivatives or use-based terms)")
    if cls == "unknown":
        return Audit(spdx, "fail", f"{spdx} is not a licence moxin recognises as open; use an SPDX id")
    if kind == "code":
        if cls == "osi":
            return Audit(spdx, "open", f"{spdx} is an OSI-approved licence")
        return Audit(spdx, "warning", f"{spdx} is open but not an OSI licence; code should use one (e.g. Apache-2.0)")
    if kind == "data":
        if cls in ("data-preferred", "data-accepted") or spdx in DOCUMENT:
            return Audit(spdx, "open", f"{spdx} is an open data licence")
        return Audit(
            spdx,
            "warning",
            f"{spdx} is an OSI licence, open but written for code; an open data licence "
            "(CDLA-Permissive-2.0, CC0-1.0) fits data better",
        )
    if spdx in DOCUMENT or cls == "data-preferred":
        return Audit(spdx, "open", f"{spdx} is an open document licence")
    return Audit(spdx, "warning", f"{spdx} is open but not a document licence; prefer CC-BY-4.0")


_RANK = {"open": 0, "warning": 1, "fail": 2}


def audit(expression: str | None, kind: Kind) -> Audit:
    """Audit an SPDX expression: `A OR B` takes the best choice, `A AND B` the worst term."""
    if not expression or not str(expression).strip():
        return audit_one(None, kind)
    expr = str(expression).replace("(", " ").replace(")", " ").strip()
    if " OR " in expr:
        options = [audit(e.strip(), kind) for e in expr.split(" OR ")]
        best = min(options, key=lambda a: _RANK[a.verdict])
        return Audit(str(expression), best.verdict, best.reason)
    terms = [audit_one(normalise(t.strip()), kind) for t in expr.split(" AND ")]
    worst = max(terms, key=lambda a: _RANK[a.verdict])
    return Audit(str(expression) if len(terms) > 1 else worst.licence, worst.verdict, worst.reason)


def terms(expression: str | None) -> list[str]:
    """The licence ids in an expression ('A AND (B OR C WITH D)' → [A, B, C WITH D])."""
    text = (expression or "").replace("(", " ").replace(")", " ").replace(" OR ", " AND ")
    return [t.strip() for t in text.split(" AND ") if t.strip()]


def combine(licences: list[str]) -> str:
    """Licences (ids or AND-expressions) → one expression of the distinct ids, sorted for determinism."""
    if any(" OR " in lic for lic in licences):
        parts = sorted({f"({lic})" if " OR " in lic else lic for lic in licences})
        return " AND ".join(parts)
    return " AND ".join(sorted({t for lic in licences for t in terms(lic)}))


# Full texts of some licences ship with Debian/Ubuntu; the others get a reference file pointing at SPDX.
_SYSTEM_TEXTS = Path("/usr/share/common-licenses")


def licence_text(spdx: str) -> str:
    """The licence's full text when it is available offline, else a reference (name + SPDX URL)."""
    local = _SYSTEM_TEXTS / spdx
    if local.is_file():
        return local.read_text("utf-8", errors="replace")
    name = known().get(spdx, spdx)
    url = "" if spdx.startswith("LicenseRef-") else f"https://spdx.org/licenses/{spdx}.html"
    body = (
        "The material under this licence is in the public domain: its copyright has expired, so no licence terms apply."
        if spdx == "LicenseRef-Public-Domain"
        else f"Full text: {url}\n(The text is referenced rather than bundled: it was not available offline when this "
        "release was built.)"
    )
    return f"SPDX-License-Identifier: {spdx}\nName: {name}\n\n{body}\n"


def licence_filename(spdx: str) -> str:
    """LICENSES/<id>.txt; an exception (`X WITH Y`) is covered by X's text."""
    return "LICENSES/" + re.sub(r"[^A-Za-z0-9.+-]", "_", spdx.split(" WITH ")[0].strip()) + ".txt"
