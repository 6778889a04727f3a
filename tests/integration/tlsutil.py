"""Certificates for TLS tests, made with `openssl req` in a temporary directory."""

import os
import subprocess


def make_cert(directory, name, cn, sans, org="scalegate-test", ips=()):
    """A self-signed P-256 certificate for `cn` with DNS SANs (and IP SANs `ips`); returns
    (cert path, key path). Written under temporary names and renamed, so a reader never sees
    half a file."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    san = ",".join(["DNS:" + s for s in sans] + ["IP:" + i for i in ips])
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/O=%s/CN=%s" % (org, cn),
         "-addext", "subjectAltName=" + san,
         "-keyout", key + ".tmp", "-out", cert + ".tmp"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.replace(key + ".tmp", key)
    os.replace(cert + ".tmp", cert)
    return cert, key


def s_client(port, servername=None, extra=(), timeout=10):
    """Runs `openssl s_client` against 127.0.0.1:port; returns its stdout (text)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port]
    if servername:
        args += ["-servername", servername]
    else:
        args += ["-noservername"]
    args += list(extra)
    p = subprocess.run(args, input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.stdout.decode("utf-8", "replace")


def served_subject(port, servername=None, extra=()):
    """The subject line of the certificate the server presented ("" when none)."""
    for line in s_client(port, servername, extra).splitlines():
        if line.startswith("subject="):
            return line
    return ""
