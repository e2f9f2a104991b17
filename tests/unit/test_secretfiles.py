"""Which files of a code folder look like secrets: the families of names, the content rule, and the
near misses that must ship (code is never a secret by its name)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bundler.build import secretfiles
from bundler.build.code import check_code_source, materialize_code
from bundler.errors import BundlerError
from bundler.spec.model import CodeVersion

SECRETS = {
    "an SSH private key": ["id_rsa", "id_rsa.bak", "id_rsa_deploy", "id_ed25519.old", "deploy/id_dsa",
                           "id_ecdsa_sk", "id_ed25519-2024", "ID_RSA.orig", "id_rsa~", "keys/id_xmss",
                           "etc/ssh_host_ed25519_key", "identity"],
    "a PuTTY private key": ["private.ppk", "keys/server.PPK", "deploy.ppk.bak"],
    "a key or keystore file": ["certs/server.pem", "tls.key", "store.p12", "app.pfx", "release.jks",
                               "android.keystore", "auth.p8", "vault.kdbx"],
    "an env file": [".env", ".env.production", ".env.example", ".envrc", "conf/prod.env",
                    "sub/.env.local.bak"],
    "a secrets file": ["secrets.yaml", "secrets.toml", ".streamlit/secrets.toml", "client_secret.json",
                       "k8s/db-secret.yml", "secret", ".secrets", "topsecret.txt", "SECRETS.JSON",
                       "secret_santa.txt"],
    "a credentials file": ["credentials", "credentials.json", ".git-credentials", "db-credentials.ini",
                           ".cargo/credentials.toml", "application_default_credentials.json"],
    "a password file": ["passwords.txt", "db_password.txt", "password", "admin.password",
                        "passwords.csv"],
    "a login file": [".netrc", "_netrc", ".pgpass", ".pypirc", ".npmrc", ".htpasswd", "htpasswd",
                     ".my.cnf", ".dockercfg", ".vault-token", ".s3cfg", ".boto", "ops/.s3cfg.bak"],
    "a Kubernetes config": ["kubeconfig", "kubeconfig.yaml", "prod.kubeconfig", ".kube/config",
                            "ops/.kube/cache/x.json"],
    "a Docker login": [".docker/config.json", "ci/.docker/config.json"],
    "a Terraform state": ["terraform.tfstate", "infra/terraform.tfstate.backup", "x.tfstate.1700000"],
    "a cloud service-account key": ["service-account.json", "service_account.json",
                                    "my-project-service-account-key.json", "serviceaccount.json",
                                    "ci-sa-key.json"],
    "a cloud login folder": [".aws/config", ".aws/credentials", ".azure/accessTokens.json",
                             "home/.config/gcloud/access_tokens.db"],
    "a shell history": [".bash_history", ".zsh_history", ".python_history", ".psql_history"],
    "a key folder": [".ssh/config", ".ssh/known_hosts", ".ssh/id_rsa.pub", ".gnupg/pubring.kbx"],
    "a GnuPG secret keyring": ["secring.gpg", "keys/secring.skr", "secring.gpg.old",
                               "backup/private-keys-v1.d/0A1B.key"],
}

# Near misses: these ship. Code, docs and media never match by name (`secrets.py` is ordinary
# Python, the stdlib has one); public keys, words that only start like a family, manifests.
SHIPS = ["secrets.py", "app/secrets.py", "secret_santa.py", "credentials.py", "passwords.py",
         "id_rsa.pub", "keys/id_ed25519.pub", "id_rsa_test.go", "docs/secrets.md", "secret_door.png",
         "templates/secrets.yaml.j2", "secretary.csv", "secretsmanager.yaml", "tokenizer.json",
         "password_policy.yaml", "service-account.yaml", "kube/config", "docker/config.json",
         "environment.yml", "venv.cfg", "identity.json", "keyboard.txt", "terraform.tf",
         "main.tfvars.md", "monkey.py", "README.rst", "settings.ini", "pubring.gpg", "cert.crt"]


@pytest.mark.parametrize(("family", "rel"), [(f, r) for f, rels in SECRETS.items() for r in rels])
def test_every_name_of_a_family_looks_like_a_secret(family: str, rel: str) -> None:
    assert secretfiles.by_name(rel) == family


@pytest.mark.parametrize("rel", SHIPS)
def test_near_misses_are_no_secret_by_name(rel: str) -> None:
    assert secretfiles.by_name(rel) is None


B64 = b"MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
KEYS = [b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n",
        b"-----BEGIN RSA PRIVATE KEY-----\n" + B64, b"-----BEGIN PRIVATE KEY-----\r\n" + B64,
        b"-----BEGIN EC PRIVATE KEY-----\n" + B64, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + B64,
        b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,1\n",
        b"-----BEGIN DSA PRIVATE KEY-----\n" + B64,
        b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGXyz" + B64,
        b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
        b"PuTTY-User-Key-File-2: ssh-rsa\r\nEncryption: aes256-cbc\r\n",
        b'{"type": "service_account", "project_id": "p", "private_key_id": "1",\n'
        b' "private_key": "-----BEGIN PRIVATE KEY-----\\n' + B64 + b'\\n-----END PRIVATE KEY-----\\n"}',
        b"# a config that carries a key\nname = x\ntls_key = \"\"\"\n-----BEGIN RSA PRIVATE KEY-----\n"
        + B64]
# What code that reads keys holds (cryptography's ssh.py, a PuTTY parser) is no key.
NOT_KEYS = [b"-----BEGIN PUBLIC KEY-----\n" + B64, b"-----BEGIN CERTIFICATE-----\n" + B64,
            b"ssh-ed25519 AAAAC3Nza user@host\n", b"-----BEGIN OPENSSH PUBLIC KEY-----\n" + B64,
            b'HEADER = "-----BEGIN ... PRIVATE KEY-----"\n',
            b'_SK_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"\n_SK_END = b"-----END"\n',
            b'if line.startswith(b"PuTTY-User-Key-File-"):\n', b"\x00" * 100, b""]


@pytest.mark.parametrize("data", KEYS)
def test_a_file_that_holds_a_private_key_is_a_secret_whatever_its_name(tmp_path: Path,
                                                                        data: bytes) -> None:
    (tmp_path / "settings.py").write_bytes(data)
    assert secretfiles.looks_secret("settings.py", str(tmp_path / "settings.py")) == \
        secretfiles.CONTENT


@pytest.mark.parametrize("data", NOT_KEYS)
def test_public_keys_certificates_and_mentions_are_no_secret(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "notes.txt").write_bytes(data)
    assert secretfiles.by_content(str(tmp_path / "notes.txt")) is None


def test_only_the_head_of_small_regular_files_is_read(tmp_path: Path) -> None:
    key = KEYS[0]
    (tmp_path / "late").write_bytes(b"x" * secretfiles.HEAD_BYTES + key)
    (tmp_path / "big").write_bytes(key + b"x" * secretfiles.MAX_SCANNED)
    (tmp_path / "key").write_bytes(key)
    os.symlink("key", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # never opened: it would block
    for name in ("late", "big", "link", "fifo"):
        assert secretfiles.by_content(str(tmp_path / name)) is None, name
    assert secretfiles.by_content(str(tmp_path / "key")) == secretfiles.CONTENT


def _tree(src: Path, rels: list[str]) -> None:
    for rel in rels:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("value = 1\n")


def test_the_build_names_each_secret_and_its_family_and_ships_code_named_like_one(
        tmp_path: Path) -> None:
    src = tmp_path / "proj"
    _tree(src, ["app.py", "secrets.py", "id_rsa.pub", "secretary.csv", "deploy/id_rsa.bak"])
    (src / "conf.ini").write_bytes(b"[tls]\nkey = -----BEGIN EC PRIVATE KEY-----\n" + B64)
    with pytest.raises(BundlerError) as caught:
        check_code_source(CodeVersion("v1", path="proj"), tmp_path, tmp_path / "out")
    assert str(caught.value).startswith("code v1: would ship what looks like a secret: ")
    assert "conf.ini (holds a private key)" in str(caught.value)
    assert "deploy/id_rsa.bak (an SSH private key)" in str(caught.value)
    assert "secrets.py" not in str(caught.value) and "id_rsa.pub" not in str(caught.value)
    dest = tmp_path / "v1"
    materialize_code(CodeVersion("v1", path="proj", exclude=("deploy/",), include=("conf.ini",)),
                     tmp_path, dest, tmp_path / "out")
    assert sorted(p.name for p in dest.rglob("*")) == ["app.py", "conf.ini", "id_rsa.pub",
                                                      "secretary.csv", "secrets.py"]


def test_the_content_scan_is_cheap_on_a_venv_sized_tree(tmp_path: Path) -> None:
    """5,000 files of 2-40 KiB (a virtualenv's site-packages holds about that many): the names
    and heads of all of them in well under a second on this machine."""
    src = tmp_path / "proj"
    for i in range(5000):
        folder = src / f"pkg{i % 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i}.py").write_bytes(b"x = 1\n" * (300 + (i % 20) * 300))
    start = time.perf_counter()
    selection = check_code_source(CodeVersion("v1", path="proj"), tmp_path, tmp_path / "out")
    took = time.perf_counter() - start
    assert selection is not None and not selection.secrets
    assert took < 10, took
