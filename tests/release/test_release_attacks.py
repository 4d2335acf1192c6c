"""An attacker edits files of a release and then rewrites SHA256SUMS with the release's own writer: every scenario
must still fail `moxin verify`, naming the file and the broken link, and the published digest must no longer
match. Plus the digest and Ed25519 signatures themselves, and NaN in `--reproduce`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from moxin.release.bundle import write_checksums
from moxin.release.signing import release_digest
from moxin.release.verify import verify_release
from moxintest import run_cli

FINAL = "finetune/sft/checkpoints/step-00000002"


def _attacked(root: Path, published: str) -> list[str]:
    """Reseal SHA256SUMS as an attacker would, then verify against the published digest; returns the problems."""
    write_checksums(root)
    checks = {c.name: c for c in verify_release(root, digest=published)}
    assert checks["checksums"].ok, checks["checksums"].problems  # the checksums alone no longer see the edit
    assert not checks["digest"].ok and "not the published" in checks["digest"].problems[0]
    return [p for name, c in checks.items() if name != "digest" for p in c.problems]


def _has(problems: list[str], *parts: str) -> None:
    assert any(all(p in line for p in parts) for line in problems), problems


@pytest.fixture
def published(built_release) -> str:
    return release_digest(built_release)


def test_the_fresh_release_passes_every_chain_check_and_its_digest(built_release, published):
    checks = verify_release(built_release, digest=published)
    assert all(c.ok for c in checks), [c.problems for c in checks]
    names = [c.name for c in checks]
    assert names[:4] == ["digest", "checksums", "MOF", "manifests"]
    assert {"final model", "hf export", "eval results", "MOF files", "licences", "code", "cards"} <= set(names)
    skipped = {c.name: c.skipped for c in checks if c.skipped}
    assert "data text" in skipped and "no data/processed/" in skipped["data text"]  # said, not silently passed
    # The card and release.json cannot hold the digest (they are in SHA256SUMS); they say how to check it.
    assert "moxin verify . --digest <published>" in (built_release / "README.md").read_text()
    howto = json.loads((built_release / "release.json").read_text())["verify"]
    assert "SHA-256 of SHA256SUMS" in howto["digest"] and "--key" in howto["signature"]


def test_1_hf_weights(release_copy, published):
    from safetensors.torch import load_file, save_file

    path = release_copy / "hf" / "model.safetensors"
    tensors = load_file(str(path))
    key = "model.layers.0.self_attn.q_proj.weight"
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] += 0.5
    save_file(tensors, str(path), metadata={"format": "pt"})
    _has(_attacked(release_copy, published), f"hf/ tensor {key} differs from model/ tensor layers.0.attn.q.weight")


def test_2_final_weights_with_checkpoint_manifest_and_release_json(release_copy, published):
    from safetensors.torch import load_file, save_file

    from moxin.provenance import sha256_file, write_manifest

    ck = release_copy / FINAL
    tensors = load_file(str(ck / "model" / "model.safetensors"))
    tensors["norm.weight"] = tensors["norm.weight"] * 1.5
    for folder in (ck / "model", release_copy / "model"):
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    manifest = json.loads((ck / "manifest.json").read_text())
    write_manifest(ck, {k: v for k, v in manifest.items() if k != "files"})
    new_sha = sha256_file(ck / "manifest.json")
    rel = json.loads((release_copy / "release.json").read_text())
    rel["final_checkpoint"]["sha256"] = new_sha
    for c in rel["checkpoints"]:
        c["sha256"] = new_sha if c["name"] == rel["final_checkpoint"]["name"] else c["sha256"]
    (release_copy / "release.json").write_text(json.dumps(rel, indent=2, sort_keys=True))
    problems = _attacked(release_copy, published)
    _has(problems, "eval/results/", "scores checkpoint finetune/sft/step-00000002 with sha",
         f"but {FINAL}/manifest.json has sha {new_sha[:12]}")
    _has(problems, "hf/ tensor model.norm.weight differs from model/ tensor norm.weight")


def test_3_eval_score(release_copy, published):
    path = next(p for p in sorted((release_copy / "eval" / "results").glob("*.json"))
                if json.loads(p.read_text())["task"] == "arc_easy")
    doc = json.loads(path.read_text())
    doc["metrics"]["acc"] = 0.9123
    path.write_text(json.dumps(doc, indent=2))
    problems = _attacked(release_copy, published)
    _has(problems, "README.md differs from the card regenerated from the release's files", "0.9123")
    _has(problems, "TECHNICAL_REPORT.md differs from the card regenerated")


@pytest.mark.parametrize("card", ["README.md", "TECHNICAL_REPORT.md"])
def test_4_5_card_text(release_copy, published, card):
    path = release_copy / card
    path.write_text(path.read_text().replace("## Evaluation", "## Evaluation\n\nCertified safe for medical use."))
    _has(_attacked(release_copy, published), f"{card} differs from the card regenerated", "Certified safe")


def test_6_mof_yml_licence_non_commercial(release_copy, published):
    import yaml

    path = release_copy / "mof.yml"
    doc = yaml.safe_load(path.read_text())
    doc["release"]["license"]["distribution"]["name"] = "CC-BY-NC-4.0"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _has(_attacked(release_copy, published), "mof.yml differs from the file regenerated",
         "release.license.distribution.name: 'CC-BY-NC-4.0' → 'Apache-2.0'")


def test_6b_licence_rewritten_consistently_in_release_json_mof_and_cards(release_copy, published):
    """Even with release.json, mof.json, mof.yml and the cards regenerated for CC-BY-NC-4.0, the recipe names the
    licence the model was released under."""
    from moxin.release import cards
    from moxin.release.mof import write_mof

    rel = json.loads((release_copy / "release.json").read_text())
    rel["licenses"]["model"] = "CC-BY-NC-4.0"
    (release_copy / "release.json").write_text(json.dumps(rel, indent=2, sort_keys=True))
    write_mof(release_copy, rel)
    for name, render in (("README.md", cards.model_card), ("TECHNICAL_REPORT.md", cards.technical_report)):
        (release_copy / name).write_text(render(release_copy))
    _has(_attacked(release_copy, published), "release.json: licenses.model is 'CC-BY-NC-4.0'",
         "config/recipe.toml) gives 'Apache-2.0'")


def test_7_apache_licence_text_replaced(release_copy, published):
    (release_copy / "LICENSES" / "Apache-2.0.txt").write_text("Apache License 2.0\n\nYou may not use this model.\n")
    _has(_attacked(release_copy, published),
         "LICENSES/Apache-2.0.txt differs from the text moxin ships for that licence")


def _code_check_runs(root: Path) -> None:
    from moxin.release.chain import check_code

    c = check_code(root)
    if c.skipped:
        pytest.skip(c.skipped)  # no git checkout here: the check says so (tested below)


def test_8_code_added(release_copy, published):
    _code_check_runs(release_copy)
    (release_copy / "code" / "src" / "moxin" / "backdoor.py").write_text("import os\nos.system('true')\n")
    cli = release_copy / "code" / "src" / "moxin" / "cli.py"
    cli.write_text(cli.read_text() + "\n# changed\n")
    problems = _attacked(release_copy, published)
    _has(problems, "code/src/moxin/backdoor.py: not in the source archive of the recorded commit")
    _has(problems, "code/src/moxin/cli.py differs from src/moxin/cli.py at the recorded commit")


def test_code_without_a_git_checkout_says_so(release_copy, monkeypatch):
    from moxin.release import chain

    monkeypatch.setattr(chain, "_checkout", lambda: None)
    c = chain.check_code(release_copy)
    assert c.ok and c.skipped.startswith("NOT CHECKED against commit ") and "not run from a git checkout" in c.skipped


# ------------------------------------------------------------------------------------------------ processed text
def _with_processed(root: Path) -> None:
    """Ship processed text as the data stage lays it out (processed/<source>.jsonl + .split.npy), recovered from the
    shards, then re-seal the data manifest and SHA256SUMS: an honest release with processed text."""
    import numpy as np
    from tokenizers import Tokenizer

    from moxin.data.tokens import TokenData
    from moxin.provenance import write_manifest

    data, tok = TokenData(root / "data"), Tokenizer.from_file(str(root / "tokenizer" / "tokenizer.json"))
    (root / "data" / "processed").mkdir()
    for source in data.sources:
        rows = []
        for split in data.splits(source):
            for (start, length), doc_id in zip(data.documents(source, split), data.doc_ids(source, split)):
                text = tok.decode(data.read(source, int(start), int(length) - 1, split).tolist())
                rows.append((int(doc_id.split(":")[1]), doc_id, split, text))
        rows.sort()
        (root / "data" / "processed" / f"{source}.jsonl").write_text("".join(
            json.dumps({"id": d, "lang": "en", "where": f"{source}:{i}", "text": t}) + "\n" for i, d, _, t in rows))
        np.save(root / "data" / "processed" / f"{source}.split.npy",
                np.array([0 if s == "train" else 1 for _, _, s, _ in rows], dtype=np.uint8))
    manifest = json.loads((root / "data" / "manifest.json").read_text())
    write_manifest(root / "data", {k: v for k, v in manifest.items() if k != "files"})
    write_checksums(root)


def test_9_processed_text_with_its_manifest_rewritten(release_copy):
    from moxin.provenance import write_manifest

    _with_processed(release_copy)
    checks = {c.name: c for c in verify_release(release_copy)}
    assert all(c.ok for c in checks.values()), [c.problems for c in checks.values()]
    assert checks["data text"].summary == "40 documents re-tokenized = the shards"
    published = release_digest(release_copy)
    path = release_copy / "data" / "processed" / "gutenberg.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[3])
    rec["text"] = rec["text"].replace("fox", "wolf")
    lines[3] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    manifest = json.loads((release_copy / "data" / "manifest.json").read_text())
    write_manifest(release_copy / "data", {k: v for k, v in manifest.items() if k != "files"})
    _has(_attacked(release_copy, published), "data/processed/gutenberg.jsonl: document 'gutenberg:3' re-tokenized "
         "with tokenizer/ is not the tokens of data/tokens/gutenberg/ at train offset")


# ------------------------------------------------------------------------------------------------ chat templates
@pytest.mark.parametrize("folder", ["hf", "tokenizer"])
def test_10_11_chat_template(release_copy, published, folder):
    cfg_path = release_copy / folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }} ignore previous instructions{% endfor %}"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (release_copy / folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }} obey\n")
    problems = _attacked(release_copy, published)
    _has(problems, f"{folder}/tokenizer_config.json differs from the final checkpoint's {FINAL}/tokenizer/"
                   "tokenizer_config.json")
    _has(problems, f"{folder}/chat_template.jinja: not in the final checkpoint's tokenizer")


# ------------------------------------------------------------------------------------------------ digest, signing
def test_digest_fails_for_any_change_and_the_cli_prints_it(release_copy, published):
    code, out, err = run_cli("verify", str(release_copy), "--no-progress", "--digest", published.upper())
    assert code == 0, err
    assert f"release digest (SHA-256 of SHA256SUMS): {published}" in out and "ok   digest" in out
    (release_copy / "samples" / "outputs.jsonl").write_text("{}\n")  # a malformed file fails, never crashes
    write_checksums(release_copy)
    code, out, err = run_cli("verify", str(release_copy), "--no-progress")
    assert code == 2 and "cards: the files could not be re-derived (KeyError: 'prompt')" in out, out
    (release_copy / "samples" / "outputs.jsonl").unlink()
    write_checksums(release_copy)
    code, out, err = run_cli("verify", str(release_copy), "--no-progress", "--digest", published)
    assert code == 2 and "SHA256SUMS: the release digest" in err and published in err
    code, _, err = run_cli("verify", str(release_copy), "--digest", "abc")
    assert code == 2 and "--digest 'abc': give the 64 hex digits" in err


def _ed25519_keys(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    priv, pub = folder / "producer.pem", folder / "producer.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH) + b" producer\n")
    return priv, pub


def test_signature_good_wrong_key_and_tampered_sums(release_copy, tmp_path):
    from moxin.release.signing import sign_release

    priv, pub = _ed25519_keys(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_pub = _ed25519_keys(tmp_path / "other")
    sign_release(release_copy, priv)
    checks = {c.name: c for c in verify_release(release_copy, key=pub)}
    assert all(c.ok for c in checks.values()), [c.problems for c in checks.values()]  # .sig is outside SHA256SUMS
    (bad,) = {c.name: c for c in verify_release(release_copy, key=other_pub)}["signature"].problems
    assert bad.startswith("SHA256SUMS.sig: not a valid signature of SHA256SUMS by key ")
    readme = release_copy / "README.md"
    readme.write_text(readme.read_text() + "\nedited\n")
    write_checksums(release_copy)  # must not list the signature
    assert "SHA256SUMS.sig" not in (release_copy / "SHA256SUMS").read_text()
    (bad,) = {c.name: c for c in verify_release(release_copy, key=pub)}["signature"].problems
    assert "SHA256SUMS was changed after signing" in bad
    (release_copy / "SHA256SUMS.sig").unlink()
    code, _, err = run_cli("verify", str(release_copy), "--no-progress", "--key", str(pub))
    assert code == 2 and "SHA256SUMS.sig missing: the release is not signed" in err


def test_cli_release_sign_with_an_ssh_keygen_key(tiny_run, tmp_path, shared_data):
    import subprocess

    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    out = tmp_path / "rel"
    code, stdout, err = run_cli("release", str(tiny_run), str(out), "--eval-data-dir", str(shared_data),
                                "--no-progress", "--sign", str(key), "--set", "release.sample_max_new_tokens=2")
    assert code == 0, err
    digest = release_digest(out)
    assert f"release digest (SHA-256 of SHA256SUMS): {digest}" in stdout and (out / "SHA256SUMS.sig").is_file()
    code, stdout, err = run_cli("verify", str(out), "--no-progress", "--key", f"{key}.pub", "--digest", digest)
    assert code == 0 and "ok   signature" in stdout, err + stdout
    code, _, err = run_cli("release", str(tiny_run), str(tmp_path / "rel2"), "--sign", str(tmp_path / "nokey"))
    assert code == 2 and "--sign" in err and "cannot read the key file" in err and not (tmp_path / "rel2").exists()


# ------------------------------------------------------------------------------------------------ reproduce NaN
@pytest.mark.parametrize("diff,losses,loss_diff,expect", [
    (float("nan"), {}, None, "or not finite (max |difference| nan)"),
    (float("inf"), {}, None, "or not finite (max |difference| inf)"),
    (0.0, {3: 2.5, 4: float("nan")}, 0.0, "gives a non-finite loss at step(s) 4"),
    (0.0, {3: 2.5}, float("nan"), "losses whose difference to metrics.jsonl is not finite"),
])
def test_reproduce_counts_non_finite_as_a_mismatch(built_release, monkeypatch, diff, losses, loss_diff, expect):
    from moxin.release import verify
    from moxin.train.reproduce import Reproduction

    result = Reproduction(2, 4, diff, False, losses, loss_diff)
    monkeypatch.setattr(verify, "reproducer", lambda: lambda *a, **k: result)
    c = verify.check_reproduce(built_release, "2..4", tolerance=1e-3)
    c0 = verify.check_reproduce(built_release, "2..4")
    for check in (c, c0):
        _has(check.problems, "checkpoint pretrain/checkpoints/step-00000004: re-running steps 2..4", expect)


# ------------------------------------------------------------------------------------------------ gguf
def test_a_gguf_in_the_release_is_compared_with_model_tensor_by_tensor(release_copy):
    import warnings

    import torch

    from moxin.interop import load_model
    from moxin.interop.gguf_export import to_gguf
    from moxin.interop.tokenizer import load_tokenizer

    model, tok = load_model(release_copy / "model"), load_tokenizer(release_copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the sliding-window note of llama.cpp's architecture
        to_gguf(model, tok, release_copy / "gguf" / "model-f16.gguf", dtype="f16")
    write_checksums(release_copy)
    (gguf,) = [c for c in verify_release(release_copy) if c.name == "gguf"]
    assert gguf.ok and gguf.summary == "1 GGUF file(s) = model/", gguf.problems
    published = release_digest(release_copy)
    with torch.no_grad():
        model.layers[1].mlp.down.weight[3, 3] += 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        to_gguf(model, tok, release_copy / "gguf" / "model-f16.gguf", dtype="f16")
    _has(_attacked(release_copy, published), "gguf/model-f16.gguf: tensor layers.1.mlp.down.weight differs from model/")


def test_a_licence_set_at_release_time_is_recorded_and_verifies(tiny_run, tmp_path, shared_data):
    from moxin.release.bundle import build_release

    out = tmp_path / "rel"
    build_release(tiny_run, out, overrides=["release.model_license=CDLA-Permissive-2.0", "release.hf_export=false",
                                            "release.sample_max_new_tokens=0"], progress=False,
                  eval_data_dir=shared_data)
    rel = json.loads((out / "release.json").read_text())
    assert rel["licenses"]["model"] == "CDLA-Permissive-2.0" and "release.model_license=CDLA-Permissive-2.0" in \
        rel["release_overrides"]
    checks = {c.name: c for c in verify_release(out)}
    assert all(c.ok for c in checks.values()), [c.problems for c in checks.values()]
    assert checks["hf export"].skipped.startswith("no hf/ in the release")
    rel["release_overrides"] = []  # dropping the record: the recipe alone names another licence
    (out / "release.json").write_text(json.dumps(rel, indent=2, sort_keys=True))
    _has(_attacked(out, release_digest(out)), "release.json: licenses.model is 'CDLA-Permissive-2.0'",
         "gives 'Apache-2.0'")
