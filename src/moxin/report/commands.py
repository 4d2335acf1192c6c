"""`moxin report`: write one self-contained HTML page for a run, a release, or two of them side by side.

No torch here: the command reads JSON, JSONL and text only."""

from __future__ import annotations

import os
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024  # the page must stay small enough to mail and to open anywhere


def render_page(root: str | Path, lang: str = "en", out: str | Path | None = None, embedded: bool = False) -> str:
    """The page of one run or release. `out`: where it will be written (its links are relative to that folder);
    `embedded`: the release's own index.html (no digest, nothing read from outside the release)."""
    from moxin.report.collect import collect
    from moxin.report.page import render

    root = Path(root)
    prefix = ""
    if out is not None and not embedded:
        rel = os.path.relpath(root.resolve(), Path(out).resolve().parent)
        prefix = "" if rel == "." else Path(rel).as_posix() + "/"
    return render(collect(root, embedded=embedded), lang, prefix)


def release_page(release: str | Path) -> str:
    """The bytes of a release's own `index.html` (what `moxin release` writes and `moxin verify` recomputes)."""
    return render_page(release, "en", embedded=True)


def default_out(paths: list[Path]) -> Path:
    """Next to what was read: <run>/report.html, <release>-report.html beside a release, A-vs-B.html beside A."""
    from moxin.report.collect import kind_of

    a = paths[0]
    if len(paths) == 2:
        return a.parent / f"{a.name}-vs-{paths[1].name}.html"
    return a / "report.html" if kind_of(a) == "run" else a.parent / f"{a.name}-report.html"


def report(
    path: Path, path2: Path | None = None, out: Path | None = None, open: bool = False, lang: str = "en"
) -> None:
    """Write one self-contained HTML page (no network, inline SVG charts) for a run or a release, or compare two.

    The page shows openness (MOF class, components, licence audit), data, training curves, evaluation over
    checkpoints, lineage, verification and samples. Open it from disk in any browser.

    Args:
        path: a run folder (<run.out_dir>/<run.name>) or a release folder
        path2: a second run or release: render a side-by-side comparison (config differences, metric deltas)
        out: the HTML file to write (default: <run>/report.html, or <release>-report.html beside a release)
        open: open the page in the default browser afterwards
        lang: the labels' language: en or ja
    """
    from moxin.errors import ReportError
    from moxin.provenance import atomic_write_text
    from moxin.report.labels import LANGS

    if lang not in LANGS:
        raise ReportError(f"--lang {lang!r} is not supported; use one of: {', '.join(LANGS)}")
    paths = [Path(path)] + ([Path(path2)] if path2 is not None else [])
    target = Path(out) if out is not None else default_out(paths)
    if len(paths) == 2:
        from moxin.report.collect import collect
        from moxin.report.compare import render_comparison

        html = render_comparison(collect(paths[0]), collect(paths[1]), lang)
    else:
        html = render_page(paths[0], lang, target)
    size = len(html.encode("utf-8"))
    if size > MAX_BYTES:
        raise ReportError(
            f"report for {paths[0]} would be {size} bytes, over the {MAX_BYTES}-byte limit; report on "
            "a release with fewer evaluation results"
        )
    atomic_write_text(target, html)
    print(f"report: {target} ({size / 1024:.0f} KiB)")
    if open:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())


report.optional_positionals = ("path2",)  # type: ignore[attr-defined]  # `moxin report A [B]`
