"""`moxin verify`: a fresh release passes; one changed byte anywhere, a missing or an extra file, or a changed
optimizer-state value (even with SHA256SUMS re-sealed) fails, naming the file or the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moxin.release.bundle import write_checksums
from moxin.release.verify import verify_release
from moxintest import run_cli


def _problems(root: Path) -> list[str]:
    return [p for c in verify_release(root) for p in c.problems]


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_fresh_release_verifies(built_release):
    checks = verify_release(built_release)
    assert [c.name for c in checks][:3] == ["checksums", "MOF", "manifests"]  # then the chain checks
    assert all(c.ok for c in checks), [c.problems for c in checks]
    lines = (built_release / "SHA256SUMS").read_text().splitlines()
    files = [p for p in built_release.rglob("*") if p.is_file() and p.name != "SHA256SUMS"]
    assert len(lines) == len(files)
    digest, name = lines[0].split("  ", 1)  # the `sha256sum` format: hash, two spaces, path
    assert len(digest) == 64 and (built_release / name).is_file()


@pytest.mark.parametrize("rel", ["README.md", "mof.yml", "pretrain/checkpoints/step-00000002/model/model.safetensors",
                                 "data/tokens.json", "eval/data/arc/ARC-Easy-Dev.jsonl", "hf/config.json"])
def test_one_changed_byte_anywhere_fails_naming_the_file(release_copy, rel):
    _flip_byte(release_copy / rel)
    problems = _problems(release_copy)
    assert f"changed file: {rel} (SHA-256 differs from SHA256SUMS)" in problems


def test_missing_and_extra_files_are_named(release_copy):
    (release_copy / "paper" / "moxin-method.md").unlink()
    (release_copy / "notes.txt").write_text("not part of the release")
    problems = _problems(release_copy)
    assert "missing file: paper/moxin-method.md" in problems
    assert "extra file: notes.txt (not in SHA256SUMS)" in problems
    # Without the paper the contents no longer support the Class I that mof.json claims.
    assert any(p.startswith("mof.json claims Class I but the contents give Class II") for p in problems)


def test_changed_optimizer_value_fails_naming_the_checkpoint_even_when_resealed(release_copy):
    import torch
    from safetensors.torch import load_file, save_file

    ck = "pretrain/checkpoints/step-00000002"
    path = release_copy / ck / "optimizer.safetensors"
    tensors = load_file(str(path))
    key = sorted(k for k in tensors if tensors[k].numel() > 1)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] += 1.0
    save_file(tensors, str(path))
    assert any(p == f"changed file: {ck}/optimizer.safetensors (SHA-256 differs from SHA256SUMS)"
               for p in _problems(release_copy))
    write_checksums(release_copy)  # the outer checksums re-sealed: the checkpoint's own manifest still catches it
    problems = _problems(release_copy)
    assert problems == [f"checkpoint {ck}: optimizer.safetensors: SHA-256 mismatch (file changed or corrupted)"]
    assert torch.is_tensor(tensors[key])


def test_data_fingerprint_mismatch_is_named(release_copy):
    ck = release_copy / "pretrain" / "checkpoints" / "step-00000004"
    state = json.loads((ck / "train_state.json").read_text())
    state["data"]["fingerprint"] = "0" * 64  # the trainer's train_state.json layout
    from moxin.provenance import write_manifest

    (ck / "train_state.json").write_text(json.dumps(state))
    manifest = json.loads((ck / "manifest.json").read_text())
    write_manifest(ck, {k: v for k, v in manifest.items() if k != "files"})
    write_checksums(release_copy)
    problems = _problems(release_copy)
    assert any(p.startswith("checkpoint pretrain/checkpoints/step-00000004: data fingerprint 000000000000… is not "
                            "the release data's") for p in problems), problems


def test_cli_verify_and_mof_check(release_copy):
    code, out, err = run_cli("verify", str(release_copy))
    assert code == 0 and "ok   checksums" in out and "ok   MOF: Class I" in out, err
    code, out, _ = run_cli("mof", "check", str(release_copy), "--require", "I")
    assert code == 0 and "Class I (Open Science)" in out and "Model parameters (Intermediate)" in out
    _flip_byte(release_copy / "README.md")
    code, out, err = run_cli("verify", str(release_copy))
    assert code == 2 and "changed file: README.md" in err and len(err.strip().splitlines()) == 1


def test_cli_errors_name_the_problem(tmp_path, release_copy):
    code, _, err = run_cli("release", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert code == 2 and "run folder not found" in err and str(tmp_path / "nope") in err
    code, _, err = run_cli("release", str(tmp_path), str(release_copy))
    assert code == 2 and "already exists" in err
    code, _, err = run_cli("verify", str(release_copy), "--reproduce", "two..four")
    assert code == 2 and "--reproduce 'two..four'" in err
    import shutil

    for ck in release_copy.glob("pretrain/checkpoints/step-*"):
        shutil.rmtree(ck)
    code, _, err = run_cli("mof", "check", str(release_copy), "--require", "I")
    assert code == 2 and "achieves Class II, below the required Class I" in err and "Intermediate" in err


def test_reproduce_is_bitwise_identical(built_release):
    import torch

    torch.set_num_threads(1)  # as the run was trained (see conftest._pretrain)
    (check,) = [c for c in verify_release(built_release, reproduce="2..4") if c.name == "reproduce"]
    assert check.ok, check.problems
    assert check.summary.startswith("steps 2..4: bitwise identical")


def test_reproduce_catches_a_changed_optimizer_value_even_when_everything_is_resealed(release_copy):
    import torch
    from safetensors.torch import load_file, save_file

    from moxin.provenance import write_manifest

    torch.set_num_threads(1)
    ck = release_copy / "pretrain" / "checkpoints" / "step-00000002"
    tensors = load_file(str(ck / "optimizer.safetensors"))
    key = sorted(k for k in tensors if k.endswith("exp_avg_sq") and tensors[k].numel() > 1)[0]
    tensors[key] = tensors[key].clone()
    tensors[key].view(-1)[0] *= 4.0
    save_file(tensors, str(ck / "optimizer.safetensors"))
    manifest = json.loads((ck / "manifest.json").read_text())
    write_manifest(ck, {k: v for k, v in manifest.items() if k != "files"})
    write_checksums(release_copy)
    checks = {c.name: c for c in verify_release(release_copy, reproduce="2..4")}
    assert checks["checksums"].ok
    lineage = "checkpoint pretrain/checkpoints/step-00000004: lineage parent"
    assert any(lineage in p for p in checks["manifests"].problems)
    (problem,) = checks["reproduce"].problems
    assert problem.startswith("checkpoint pretrain/checkpoints/step-00000004: re-running steps 2..4 gives weights "
                              "not bitwise equal (max |difference| ")


def test_every_file_is_covered_a_changed_byte_in_any_of_them_is_named(release_copy):
    from moxin.release.verify import check_checksums

    files = sorted(p for p in release_copy.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    assert len(files) > 100
    for p in files:
        original = p.read_bytes()
        if original:
            _flip_byte(p, offset=len(original) - 1)
        else:  # empty files (e.g. code/src/moxin/build/__init__.py) are covered too
            p.write_bytes(b"\n")
        rel = p.relative_to(release_copy).as_posix()
        assert check_checksums(release_copy).problems == [f"changed file: {rel} (SHA-256 differs from SHA256SUMS)"]
        p.write_bytes(original)
    sums = release_copy / "SHA256SUMS"
    _flip_byte(sums, offset=0)  # the first hash digit: that line no longer matches its file
    (problem,) = check_checksums(release_copy).problems
    assert problem.startswith("changed file: ") or problem.startswith("SHA256SUMS:1:")


def test_release_without_data_is_refused_naming_what_is_missing(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("data"))
    info = json.loads((run / "pretrain" / "run.json").read_text())
    assert info["data_dir"] == "data"  # recorded by the trainer relative to the run folder, never absolutely
    info["data_dir"] = str(tmp_path / "gone")
    (run / "pretrain" / "run.json").write_text(json.dumps(info))
    code, _, err = run_cli("release", str(run), str(tmp_path / "out"))
    assert code == 2 and "no tokenized data for" in err and "data/tokens.json" in err
    assert not (tmp_path / "out").exists()


def test_reproduce_without_optimizer_state_says_so(tiny_run, tmp_path, shared_data):
    from moxin.release.bundle import build_release

    out = tmp_path / "rel"
    build_release(tiny_run, out, overrides=["release.optimizer_state=false", "release.hf_export=false",
                                            "release.sample_max_new_tokens=0"], progress=False,
                  eval_data_dir=shared_data)
    assert not list(out.rglob("optimizer.safetensors"))
    assert all(c.ok for c in verify_release(out)), "omitted optimizer files are recorded, not reported as missing"
    code, _, err = run_cli("verify", str(out), "--reproduce", "2..4")
    assert code == 2 and "pretrain/checkpoints/step-00000002 has no optimizer.safetensors" in err


def test_cli_release_then_verify(tiny_run, tmp_path, shared_data):
    out = tmp_path / "rel"
    code, stdout, err = run_cli("release", str(tiny_run), str(out), "--eval-data-dir", str(shared_data),
                                "--no-progress", "--set", "release.sample_max_new_tokens=2")
    assert code == 0, err
    assert f"wrote {out} in " in stdout and "MOF Class I (Open Science)" in stdout
    code, stdout, err = run_cli("verify", str(out), "--no-progress")
    assert code == 0 and "ok   manifests: 4 checkpoints" in stdout, err
