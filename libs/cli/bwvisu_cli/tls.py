"""The demo's certificates: a small CA and one server certificate for NATS and etcd (`bwvisu up`).

A site brings its own (deploy/README.md); these exist so that the demo runs the same TLS code paths.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 825


def ensure_demo_certificates(tls_dir: Path, hosts: list[str]) -> bool:
    """CA (ca.crt) and server.crt/server.key whose names cover `hosts`; remade when a host is new."""
    ca_cert, server_cert = tls_dir / "ca.crt", tls_dir / "server.crt"
    wanted = set(hosts) | {"127.0.0.1", "localhost"}
    if server_cert.exists() and ca_cert.exists() and wanted <= _names(server_cert):
        return False
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = _key(tls_dir / "ca.key")
    now = datetime.datetime.now(datetime.UTC)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bwvisu demo CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server_key = _key(tls_dir / "server.key")
    sans: list[x509.GeneralName] = []
    for host in sorted(wanted):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bwvisu servers")]))
              .issuer_name(ca_name).public_key(server_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now)
              .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
              .add_extension(x509.SubjectAlternativeName(sans), critical=False)
              .sign(ca_key, hashes.SHA256()))
    ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return True


def _key(path: Path) -> ec.EllipticCurvePrivateKey:
    """A fresh key, written 0600 before any byte of it is."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return key


def _names(cert_file: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in sans.get_values_for_type(x509.IPAddress)} | set(
        sans.get_values_for_type(x509.DNSName))
