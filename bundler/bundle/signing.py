"""Signed releases: Ed25519 signatures over a bundle's checksums.json and over a patch's patch.json.

Both records list the SHA-256 of every file they cover, so one signature covers every byte. Keys are
OpenSSH's (`ssh-keygen -t ed25519`, or `bundler keygen`): a private key file signs at build, public
key lines ("ssh-ed25519 AAAA... comment") are what a bundle trusts (etc/trusted_keys, which no
patch may touch). The signed message names what it signs, so a bundle's signature can never pass
for a patch's. `cryptography` (pyca) does the mathematics; it is shipped in every base, so a server
checks signatures offline with what the bundle carries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.bundle.record import Record
from bundler.errors import BundlerError, DamagedRecord, printable

SIGNATURE_FORMAT = 1
KINDS = ("bundle", "patch")  # what a signature covers: checksums.json, or patch.json
PASSPHRASE_ENV = "BUNDLER_KEY_PASSPHRASE"


@dataclass(frozen=True)
class Signature(Record):
    """.bundler/signature.json (the build's, of checksums.json) or patch.sig (of patch.json)."""

    kind: str
    key: str        # the signer's public key line, "ssh-ed25519 AAAA..."
    value: bytes    # the raw 64-byte Ed25519 signature

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Raises ValueError when `text` is no signature record."""
        try:
            raw = json.loads(text)
            if raw["format"] != SIGNATURE_FORMAT or raw["kind"] not in KINDS:
                raise ValueError("unknown format or kind")
            return cls(str(raw["kind"]), str(raw["key"]), base64.b64decode(raw["signature"],
                                                                            validate=True))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"the signature record is malformed ({exc})") from None

    def text(self) -> str:
        return json.dumps({"format": SIGNATURE_FORMAT, "kind": self.kind, "key": self.key,
                           "signature": base64.b64encode(self.value).decode()}, indent=1) + "\n"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)


def _message(kind: str, data: bytes) -> bytes:
    return b"bundler-signature-v1\0" + kind.encode() + b"\0" + hashlib.sha256(data).digest()


def fingerprint(key_line: str) -> str:
    """OpenSSH's fingerprint of a public key line (what `ssh-keygen -l` prints), with its comment."""
    fields = key_line.split()
    blob = base64.b64decode(fields[1]) if len(fields) > 1 else b""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}" + (f" ({' '.join(fields[2:])})" if len(fields) > 2 else "")


def _public(line: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    try:
        key = load_ssh_public_key(line.encode())
    except (ValueError, IndexError) as exc:
        raise BundlerError(f"{line[:40]!r}... is not an OpenSSH public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundlerError(f"{line[:40]!r}... is not an Ed25519 key (ssh-ed25519): bundler "
                           "signs with Ed25519 only")
    return key


def identity(line: str) -> str:
    """The key itself, without the comment: what two lines must share to be the same key."""
    return " ".join(line.split()[:2])


@dataclass(frozen=True)
class TrustedKeys(Record):
    """etc/trusted_keys: the public key lines whose signatures a bundle accepts, one a line
    (authorized_keys style: # comments and blank lines are skipped). The build writes those of
    [bundle] trusted_keys; parse refuses a line that is no Ed25519 key, saying which."""

    keys: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> TrustedKeys:
        """The record at `path`; empty (no key: unsigned patches are taken) when there is none."""
        return super().read(path) if path.is_file() else cls()

    @classmethod
    def parse(cls, text: str) -> TrustedKeys:
        keys = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                _public(line)
            except BundlerError as exc:
                raise ValueError(f"{number}: {exc}") from None
            keys.append(line)
        return cls(tuple(keys))

    def text(self) -> str:
        return "".join(f"{key}\n" for key in self.keys)


def parse_keys(text: str, where: str) -> list[str]:
    """Public key lines of a keys file (TrustedKeys' form); an error names `where` and the line."""
    try:
        return list(TrustedKeys.parse(text).keys)
    except ValueError as exc:
        raise BundlerError(f"{where}:{exc}") from None


def trusted_keys(path: Path) -> list[str]:
    """The keys a bundle trusts (its etc/trusted_keys; none when there is no such file)."""
    try:
        return list(TrustedKeys.read(path).keys)
    except DamagedRecord as exc:
        raise BundlerError(f"{path}:{exc.why}") from None


def load_private(path: Path) -> Any:
    """An Ed25519 private key file: OpenSSH's format or PEM (PKCS#8); encrypted ones take their
    passphrase from $BUNDLER_KEY_PASSPHRASE."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_ssh_private_key,
    )

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundlerError(f"cannot read the signing key {path}: {exc.strerror}") from None
    passphrase = os.environ.get(PASSPHRASE_ENV)
    password = passphrase.encode() if passphrase else None
    loader = load_ssh_private_key if b"OPENSSH PRIVATE KEY" in data else load_pem_private_key
    try:
        key = loader(data, password)
    except TypeError:
        raise BundlerError(f"the signing key {path} is encrypted: give its passphrase in "
                           f"${PASSPHRASE_ENV}") from None
    except ValueError as exc:
        raise BundlerError(f"{path} is not a usable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundlerError(f"{path} is not an Ed25519 key: make one with `bundler keygen` or "
                           "`ssh-keygen -t ed25519`")
    return key


def public_line(private: Any, comment: str = "") -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    line = private.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def sign(private: Any, kind: str, data: bytes, comment: str = "") -> Signature:
    return Signature(kind, public_line(private, comment), private.sign(_message(kind, data)))


def available() -> bool:
    """Whether this Python can check signatures: bundles that trust no key and were not signed
    are built without cryptography."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return False
    return True


def check(signature: Signature, kind: str, data: bytes, trusted: list[str]) -> None:
    """Raise BundlerError unless `signature` is a valid `kind` signature of `data` by a key in
    `trusted` (any valid key, when `trusted` is empty)."""
    if not available():
        raise BundlerError("this bundle cannot check signatures: it was built without trusted "
                           "keys or --sign, so it does not carry cryptography")
    from cryptography.exceptions import InvalidSignature

    if signature.kind != kind:
        raise BundlerError(f"the signature is a {signature.kind}'s, not a {kind}'s")
    if trusted and identity(signature.key) not in {identity(k) for k in trusted}:
        raise BundlerError(f"it is signed by {signature.fingerprint}, a key this bundle does "
                           "not trust")
    try:
        _public(signature.key).verify(signature.value, _message(kind, data))
    except InvalidSignature:
        raise BundlerError(f"its signature by {signature.fingerprint} does not match its "
                           "content") from None


def keygen(path: Path, comment: str) -> str:
    """Write a new Ed25519 key pair to `path` (private, mode 0600) and `path`.pub, creating the
    folder (0700) when it is missing; its public line."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    for what, value in (("--comment", comment), ("the key's path", str(path))):
        if printable(value) != value:  # the .pub file is one line: a line feed would add a key
            raise BundlerError(f"{what} '{printable(value)}' has a control character")
    public_path = path.with_name(path.name + ".pub")
    for existing in (path, public_path):
        if existing.exists():
            raise BundlerError(f"{existing} exists: bundler never overwrites a key")
    _key_folder(path.parent)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    line = public_line(private, comment)
    public_path.write_text(line + "\n")
    return line


def _key_folder(folder: Path) -> None:
    """Make `folder` (and the folders above it) when missing: new ones readable by their owner
    only, as ssh-keygen makes ~/.ssh."""
    if folder.is_dir():
        return
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    try:
        folder.mkdir(parents=True, mode=0o700)
        for made in missing:
            os.chmod(made, 0o700)
    except OSError as exc:
        raise BundlerError(f"cannot make the key's folder {folder}: {exc.strerror or exc}") from exc
