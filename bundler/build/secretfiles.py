"""What looks like a secret in a code folder: families of names, and the content of small files.

A file is a secret when its name belongs to a family below (matched on the lower-cased name with
backup suffixes such as `.bak`, `.old` and `~` taken off, or on its last folders), or when its first
bytes hold a private key (PEM, OpenSSH, PuTTY). Names never make a secret of source code, docs or
media (`secrets.py` is ordinary Python: the stdlib has one): the content rule still reads them.
sources.py decides what happens then (the build stops unless the file is left out or included).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    what: str                       # said in the message: "deploy/id_rsa.bak (an SSH private key)"
    names: str = ""                 # regular expression, matched whole on the file's name
    folders: tuple[str, ...] = ()   # every file under such a folder (a "/"-joined tail of folders)
    paths: tuple[str, ...] = ()     # such a tail of the path: ".docker/config.json"


def _word(*words: str) -> str:
    """A name holding one of `words` not followed by a letter: `secrets.yaml`, `client_secret.json`,
    `db-credentials`, but not `secretary.csv`."""
    return r".*(" + "|".join(words) + r")(?![a-z]).*"


FAMILIES = (
    Family("an SSH private key", r"(id_(rsa|dsa|ecdsa|ed25519|xmss)|ssh_host_.*_key)(?!.*\.pub$).*"
                                 r"|identity"),
    Family("a PuTTY private key", r".*\.ppk"),
    Family("a key or keystore file", r".*\.(pem|key|p8|p12|pfx|pkcs12|jks|keystore|bks|kdbx)"),
    Family("an env file", r"\.env.*|.*\.env"),
    Family("a secrets file", _word("secrets?")),
    Family("a credentials file", _word("credentials?")),
    Family("a password file", r"(.*[-_.])?passwords?(\.[a-z0-9]+)*"),
    Family("a login file", r"\.(netrc|pgpass|pypirc|npmrc|htpasswd|my\.cnf|dockercfg|vault-token"
                           r"|s3cfg|boto)|_netrc|htpasswd"),
    Family("a Kubernetes config", r"kubeconfig.*|.*\.kubeconfig", folders=(".kube",)),
    Family("a Docker login", paths=(".docker/config.json",)),
    Family("a Terraform state", r".*\.tfstate(\..*)?"),
    Family("a cloud service-account key", r"(.*[-_.])?service[-_]?account.*\.json|.*-sa-key\.json"),
    Family("a cloud login folder", folders=(".aws", ".azure", ".config/gcloud")),
    Family("a shell history", r"\.(bash|zsh|sh|python|psql|mysql|sqlite|node_repl|rediscli)_history"
                              r"|\.history"),
    Family("a key folder", folders=(".ssh", ".gnupg")),
    Family("a GnuPG secret keyring", r"secring\.(gpg|skr)", folders=("private-keys-v1.d",)),
)

# Names with these suffixes are code, docs, templates or media: never a secret by their name.
NOT_BY_NAME = (".py", ".pyi", ".pyx", ".pxd", ".pxi", ".ipynb", ".c", ".h", ".cc", ".cpp", ".hpp",
               ".rs", ".go", ".java", ".kt", ".scala", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx",
               ".vue", ".rb", ".php", ".pl", ".pm", ".lua", ".sh", ".bash", ".zsh", ".ps1", ".sql",
               ".md", ".rst", ".html", ".htm", ".css", ".scss", ".j2", ".jinja", ".jinja2", ".tmpl",
               ".mo", ".po", ".svg", ".png", ".jpg", ".jpeg", ".gif", ".ico", ".webp", ".pdf",
               ".woff", ".woff2", ".ttf")
BACKUP_SUFFIXES = (".bak", ".old", ".orig", ".save", ".backup", ".swp", ".tmp", "~")

# The content rule: files up to MAX_SCANNED bytes, of which the first HEAD_BYTES are read.
MAX_SCANNED = 1 << 20
HEAD_BYTES = 8 << 10
# A header, then on the next line (a real line break, or `\n` inside a JSON string) the key's
# base64 or an encrypted PEM's header: code that only names the header (a parser) is no key.
PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----(\r?\n|\\n)"
                         rb"([A-Za-z0-9+/=]{16}|Proc-Type:|Version:|Comment:|\r?\n)"
                         rb"|PuTTY-User-Key-File-\d+: [a-z0-9@.-]+\r?\n")
CONTENT = "holds a private key"

_COMPILED = [(f, re.compile(f.names) if f.names else None) for f in FAMILIES]


def by_name(rel: str) -> str | None:
    """The family the path `rel` (relative, "/"-separated) belongs to by its name or folders."""
    parts = rel.lower().split("/")
    name, folders = _unbacked(parts[-1]), parts[:-1]
    tail = "/".join(folders) + "/"
    for family, _ in _COMPILED:  # where it lies says more than its name
        if any(f"/{folder}/" in f"/{tail}" for folder in family.folders) or \
                any(f"/{rel.lower()}".endswith(f"/{path}") for path in family.paths):
            return family.what
    if name.endswith(NOT_BY_NAME):
        return None
    return next((family.what for family, pattern in _COMPILED
                 if pattern is not None and pattern.fullmatch(name)), None)


def _unbacked(name: str) -> str:
    while True:
        for suffix in BACKUP_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[:-len(suffix)]
                break
        else:
            return name


def by_content(path: str) -> str | None:
    """CONTENT when `path`, a regular file of at most MAX_SCANNED bytes, starts with a private
    key within its first HEAD_BYTES (links are not followed; unreadable files are not secrets)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SCANNED:
            return None  # never opened: a fifo or device could block or act
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SCANNED:
            return None
        head = os.read(fd, HEAD_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return CONTENT if PRIVATE_KEY.search(head) else None


def looks_secret(rel: str, path: str) -> str | None:
    """Why the file `rel` (on disk at `path`) looks like a secret, or None."""
    return by_name(rel) or by_content(path)
