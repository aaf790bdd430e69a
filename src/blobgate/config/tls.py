"""TLS contexts: serving HTTPS with certificates that rotate, and trusting private CAs.

A served certificate is reloaded into the live ``SSLContext`` when its files change
(cert-manager and Kubernetes Secrets rewrite them in place): new handshakes use the new
pair, open connections keep theirs. A new pair is first loaded into a scratch context,
so a corrupt or mismatched file never half-replaces the working one.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from blobgate.config import ClientTLSConfig, Config, ServerTLSConfig
from blobgate.errors import ConfigError

log = logging.getLogger(__name__)


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!SHA1")
    return context


class ServedCertificate:
    """The live server context and the files it is loaded from."""

    def __init__(self, cfg: ServerTLSConfig, key: str) -> None:
        self.cert_file = Path(cfg.cert_file or "")
        self.key_file = Path(cfg.key_file or "")
        self.context = _server_context()
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            why = f"cannot load certificate and key: {exc}"
            raise ConfigError(f"{key}.cert_file", why) from None

    @property
    def paths(self) -> list[Path]:
        return [self.cert_file, self.key_file]

    def reload(self) -> None:
        """Load the files again; raises (and changes nothing) when they do not form a pair."""
        _server_context().load_cert_chain(self.cert_file, self.key_file)
        self.context.load_cert_chain(self.cert_file, self.key_file)


def client_context(cfg: ClientTLSConfig, key: str) -> ssl.SSLContext:
    """The context for connecting to an HTTPS server (verifying it unless opted out)."""
    try:
        context = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.client_cert_file is not None:
            context.load_cert_chain(cfg.client_cert_file, cfg.client_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}.ca_file", f"cannot load TLS material: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not cfg.verify:
        log.warning("%s.verify is false: the upstream's certificate is NOT checked", key)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_files(cfg: Config) -> None:
    """Load every configured TLS file once, so bad ones fail ``check-config`` and start-up."""
    for tls, key in ((cfg.server.tls, "server.tls"), (cfg.metrics.tls, "metrics.tls"),
                     (cfg.admin.tls, "admin.tls")):
        if tls.enabled:
            ServedCertificate(tls, key)
    if cfg.upstream.url.startswith("https:"):
        client_context(cfg.upstream.tls, "upstream.tls")
    if cfg.storage.s3.ca_file is not None and not Path(cfg.storage.s3.ca_file).is_file():
        raise ConfigError("storage.s3.ca_file", f"{cfg.storage.s3.ca_file} is not a file")
