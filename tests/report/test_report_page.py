"""`moxin report`: the page is a pure function of the run (same bytes twice), names no absolute path, stays under
2 MB, escapes what it reads, has Japanese labels with --lang ja, compares two folders; every release holds it as
index.html, and verify regenerates it."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

from moxin.report.collect import collect
from moxin.report.commands import MAX_BYTES, release_page, render_page
from moxin.report.page import render
from moxintest import REPO

SHARED = REPO.parent / "shared" / "data"


def _cli(*args, cwd=None):
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "moxin.cli", "report", *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120, check=False)


def test_run_page_is_deterministic_small_and_has_no_absolute_path(tiny_run, tmp_path):
    out = tmp_path / "run.html"
    a, b = render_page(tiny_run, out=out), render_page(tiny_run, out=out)
    assert a == b
    assert len(a.encode()) < MAX_BYTES
    for absolute in (str(tiny_run), str(tiny_run.parent), str(tmp_path)):
        assert absolute not in a
    for sid in ("openness", "data", "training", "evaluation", "lineage", "verification", "samples"):
        assert f'<section id="{sid}">' in a
    assert "http://" not in a and "https://" not in a and "<script" not in a
    # the run has no release yet: the page says so instead of inventing a class
    assert 'id="mof-class"' not in a and "moxin release" in a
    last_val = [json.loads(x) for x in (tiny_run / "pretrain" / "metrics.jsonl").read_text().splitlines()
                if "val_loss" in x][-1]["val_loss"]
    assert f"{last_val:.4f}" in a


def test_release_holds_its_page_and_verify_regenerates_it(built_release):
    from moxin.release.chain import check_cards

    page = built_release / "index.html"
    assert page.is_file()
    sums = (built_release / "SHA256SUMS").read_text()
    assert re.search(r"^[0-9a-f]{64}  index\.html$", sums, re.M)
    assert page.read_text("utf-8") == release_page(built_release)
    assert check_cards(built_release).problems == []
    mof = json.loads((built_release / "mof.json").read_text())
    html = page.read_text("utf-8")
    assert f'<span id="mof-class" class="big">{mof["class"]}</span>' in html
    assert 'id="digest-note"' in html  # the page is inside SHA256SUMS, so it cannot hold the digest
    assert str(built_release) not in html and len(html.encode()) < MAX_BYTES


def test_verify_names_an_edited_index_html(built_release, tmp_path):
    import shutil

    from moxin.release.chain import check_cards

    copy = tmp_path / "rel"
    shutil.copytree(built_release, copy)
    assert check_cards(copy).problems == []
    html = (copy / "index.html").read_text("utf-8")
    (copy / "index.html").write_text(html.replace('class="big">', 'class="big">I', 1), "utf-8")
    problems = check_cards(copy).problems
    assert len(problems) == 1 and problems[0].startswith("index.html differs")


def test_release_report_from_the_cli_shows_the_digest(built_release, tmp_path):
    out = tmp_path / "rel.html"
    res = _cli(built_release, "--out", out)
    assert res.returncode == 0, res.stderr
    html = out.read_text("utf-8")
    digest = hashlib.sha256((built_release / "SHA256SUMS").read_bytes()).hexdigest()
    assert f'<code id="digest">{digest}</code>' in html
    assert f"moxin verify . --digest {digest}" in html
    assert out.stat().st_size < MAX_BYTES
    assert _cli(built_release, "--out", out).returncode == 0 and out.read_text("utf-8") == html


def test_lang_ja_shows_japanese_labels_and_japanese_data(built_release, tmp_path):
    out = tmp_path / "ja.html"
    assert _cli(built_release, "--out", out, "--lang", "ja").returncode == 0
    html = out.read_text("utf-8")
    assert '<html lang="ja">' in html and '<meta charset="utf-8">' in html
    for label in ("オープン性", "データ", "学習", "系譜", "検証", "出力例"):
        assert label in html
    assert "Openness" not in html
    prompts = [json.loads(x)["prompt"] for x in (built_release / "samples" / "outputs.jsonl").read_text().splitlines()]
    assert any(p in html for p in prompts if any(ord(ch) > 0x3000 for ch in p)) or \
        not any(any(ord(ch) > 0x3000 for ch in p) for p in prompts)
    bad = _cli(built_release, "--lang", "fr")
    assert bad.returncode == 2 and "--lang 'fr'" in bad.stderr and "Traceback" not in bad.stderr


def test_strings_from_files_are_escaped(built_release):
    f = collect(built_release)
    f.samples = [{"prompt": "<script>alert(1)</script>", "output": "a & b <img src=x>"}]
    html = render(f)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a &amp; b &lt;img src=x&gt;" in html


def test_comparison_of_two_folders(tiny_run, built_release, tmp_path):
    out = tmp_path / "cmp.html"
    res = _cli(tiny_run, built_release, "--out", out)
    assert res.returncode == 0, res.stderr
    html = out.read_text("utf-8")
    assert '<section id="facts">' in html and '<section id="config">' in html
    assert "pretrain: final val loss" in html and "pretrain: checkpoints" in html
    assert str(tiny_run) not in html
    # A run and its own release were built from the same recipe: the same configuration, zero deltas
    assert "The configurations are the same." in html
    assert "+" not in re.sub(r"<[^>]+>", "", html.split('id="facts"')[1].split("</section>")[0]).replace("B − A", "")


def test_not_a_run_is_one_line(tmp_path):
    res = _cli(tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "neither a run folder" in res.stderr


def test_two_builds_give_the_same_index_html(tiny_run, built_release, tmp_path):
    from moxin.release.bundle import build_release

    other = tmp_path / "again"
    build_release(tiny_run, other, progress=False, eval_data_dir=SHARED)
    assert (other / "index.html").read_bytes() == (built_release / "index.html").read_bytes()
