"""The release digest and optional Ed25519 signatures of `SHA256SUMS`.

The digest of a release is the SHA-256 of its `SHA256SUMS` file: one 64-digit value that pins every byte of the
release (SHA256SUMS lists the SHA-256 of every other file). A producer publishes it somewhere the release cannot
rewrite (a web page, a paper, a git tag); `moxin verify RELEASE --digest HEX` fails unless the release has it.

A signature (`moxin release --sign KEY`) is `SHA256SUMS.sig`, beside SHA256SUMS and outside it (a file cannot list
its own signature): the base64 Ed25519 signature of SHA256SUMS's bytes. `moxin verify --key PUB` checks it. Keys are
read with the `cryptography` library: a PEM (PKCS#8 / SubjectPublicKeyInfo) or OpenSSH Ed25519 key, so a key made
with `ssh-keygen -t ed25519 -N ''` works as it is (KEY the private file, PUB the `.pub` line).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from moxin.provenance import atomic_write_text, sha256_bytes, sha256_file
from moxin.release.runs import ReleaseError

SUMS = "SHA256SUMS"
SIG = "SHA256SUMS.sig"
_HEADER = "moxin-ed25519-signature-v1"


def release_digest(root: Path) -> str:
    """SHA-256 of the release's SHA256SUMS: the value to publish and to check with `--digest`."""
    path = Path(root) / SUMS
    if not path.is_file():
        raise ReleaseError(f"{path} not found: the digest is the SHA-256 of SHA256SUMS; is {root} a release?")
    return sha256_file(path)


def check_digest_text(flag: str, text: str) -> str:
    """A digest as given on the command line: 64 hex digits (case and a `sha256:` prefix ignored)."""
    hexd = text.strip().lower().removeprefix("sha256:")
    if len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
        raise ReleaseError(f"{flag} {text!r}: give the 64 hex digits of the release digest (SHA-256 of SHA256SUMS)")
    return hexd


def _read_key_file(path: Path, flag: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as e:
        raise ReleaseError(
            f"{flag} {path}: cannot read the key file ({e.strerror}); give an Ed25519 key file"
        ) from None


def load_private_key(path: Path):
    """An Ed25519 private key from a PEM (PKCS#8) or OpenSSH file, unencrypted."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key

    data = _read_key_file(path, "--sign")
    loader = load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data else load_pem_private_key
    try:
        key = loader(data, password=None)
    except TypeError:
        raise ReleaseError(
            f"--sign {path}: the key is encrypted; moxin reads unencrypted keys only (make a "
            "signing key with `ssh-keygen -t ed25519 -N ''`)"
        ) from None
    except (ValueError, binascii.Error) as e:
        raise ReleaseError(f"--sign {path}: not a PEM or OpenSSH private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"--sign {path}: a {type(key).__name__}, not an Ed25519 key (`ssh-keygen -t ed25519`)")
    return key


def load_public_key(path: Path):
    """An Ed25519 public key from a PEM file or an OpenSSH `ssh-ed25519 AAAA… comment` line."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key, load_ssh_public_key

    data = _read_key_file(path, "--key")
    loader = load_pem_public_key if data.lstrip().startswith(b"-----BEGIN") else load_ssh_public_key
    try:
        key = loader(data.strip())
    except (ValueError, binascii.Error, IndexError) as e:
        raise ReleaseError(f"--key {path}: not a PEM or OpenSSH public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"--key {path}: a {type(key).__name__}, not an Ed25519 public key")
    return key


def key_fingerprint(public_key) -> str:
    """SHA-256 of the raw 32-byte public key (hex, first 16 digits): how messages name a key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return sha256_bytes(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))[:16]


def sign_release(root: Path, key_path: Path) -> Path:
    """Write SHA256SUMS.sig: the Ed25519 signature of SHA256SUMS by the private key at `key_path`."""
    key = load_private_key(key_path)
    root = Path(root)
    release_digest(root)  # names a missing SHA256SUMS
    sig = key.sign((root / SUMS).read_bytes())
    fp = key_fingerprint(key.public_key())
    text = f"{_HEADER}\nkey-sha256: {fp}\n{base64.b64encode(sig).decode('ascii')}\n"
    atomic_write_text(root / SIG, text)
    return root / SIG


def verify_signature(root: Path, key_path: Path) -> list[str]:
    """Problems with SHA256SUMS.sig against the public key at `key_path` (empty when the signature is good)."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(key_path)
    fp = key_fingerprint(key)
    root = Path(root)
    sig_path = root / SIG
    if not sig_path.is_file():
        return [f"{SIG} missing: the release is not signed (sign it with `moxin release --sign KEY`)"]
    if not (root / SUMS).is_file():
        return [f"{SUMS} missing: nothing to check {SIG} against"]
    lines = sig_path.read_text("utf-8", errors="replace").splitlines()
    if len(lines) != 3 or lines[0] != _HEADER:
        return [f"{SIG}: not a moxin signature file (expected '{_HEADER}', a key line and the base64 signature)"]
    try:
        sig = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        return [f"{SIG}:3: the signature is not valid base64"]
    try:
        key.verify(sig, (root / SUMS).read_bytes())
    except InvalidSignature:
        signer = lines[1].removeprefix("key-sha256: ").strip()
        return [
            (
                f"{SIG}: not a valid signature of {SUMS} by key {key_path} (key sha256 {fp}; the file names "
                f"{signer}): {SUMS} was changed after signing, or another key signed it"
            )
        ]
    return []
