"""Look inside every layer of a saved image (`docker/podman save`, docker-archive format) for files that
must never be baked in: the build's CA bundle, build secrets, pip configuration, DSNs, database files."""

from __future__ import annotations

import fnmatch
import json
import re
import tarfile
from pathlib import Path

PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
# Paths (inside a layer, no leading slash) that would mean a secret or host state was copied in.
FORBIDDEN_PATHS = (
    "run/secrets/*", "etc/pip.conf", "*/pip.conf", "*/pip/pip.conf", "*.dsn", "*-dsn", "*/.pgpass",
    "*/PG_VERSION", "*/pg_hba.conf", "*/.local/*", "src/.git/*", "*/.env",
)


def pem_lines(bundle: bytes) -> set[bytes]:
    """One distinctive base64 line (the second) of each certificate in a PEM bundle."""
    out = set()
    for body in PEM_BLOCK.findall(bundle):
        lines = body.split()
        if len(lines) > 2:
            out.add(lines[1])
    return out


def extra_ca_blocks(engine, ref: str, ca_bundle: Path | None) -> set[bytes]:
    """Certificates of the bundle the build was given that the image's own CA bundle does not carry
    (e.g. a TLS-intercepting proxy's CA): none of them may appear in any layer."""
    if ca_bundle is None or not ca_bundle.is_file():
        return set()
    own = engine.run("run", "--rm", "--network", "none", ref, "cat", "/etc/ssl/certs/ca-certificates.crt",
                     check=False).stdout.encode()
    return pem_lines(ca_bundle.read_bytes()) - pem_lines(own)


def scan_layers(archive: Path, forbidden_content: set[bytes]) -> list[str]:
    """Findings ("layer: path: why") over every regular file of every layer of the saved image."""
    findings = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer_name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer_name)) as layer:
                for member in layer:
                    path = member.name.lstrip("./")
                    if any(fnmatch.fnmatch(path, pattern) for pattern in FORBIDDEN_PATHS):
                        findings.append(f"{layer_name}: {path}: forbidden path")
                    if not member.isfile() or not forbidden_content:
                        continue
                    data = layer.extractfile(member).read()
                    if b"-----BEGIN CERTIFICATE-----" in data and any(line in data for line in forbidden_content):
                        findings.append(f"{layer_name}: {path}: holds a CA certificate the build was given")
    return findings
