"""How fabpanel trusts a Bambu printer's TLS certificate (MQTT and FTPS alike), and the implicit-FTPS upload to
its SD card. Blocking (ftplib): the driver runs store_file in a thread."""

from __future__ import annotations

import ftplib
import hashlib
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabpanel.printers.driver import PrinterError, PrinterUnavailable

USER = 'bblp'


@dataclass(kw_only=True, slots=True, frozen=True)
class PrinterTrust:
    """The printers' certificates are per device, issued by Bambu's private CA for the serial number, never for
    the address we dial: a stock trust store and hostname checking cannot succeed. With ca_file the chain is
    verified and the certificate must name the configured serial; with fingerprint (SHA-256 of the certificate)
    it is pinned; with neither the link is encrypted but not authenticated (acceptable on a lab LAN only)."""

    serial: str
    ca_file: Path | None = None
    fingerprint: str = ''

    def context(self) -> ssl.SSLContext:
        """A client context whose sockets check the certificate right after the handshake, before a byte of
        the access code is sent (MQTT CONNECT and FTP PASS both come later)."""
        if self.ca_file is not None:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            context.check_hostname = False  # the certificate names the serial number: check() compares that
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        trust = self

        class CheckedSocket(ssl.SSLSocket):
            def do_handshake(self, block: bool = False) -> None:
                super().do_handshake(block)
                trust.check(self)

        context.sslsocket_class = CheckedSocket
        return context

    def check(self, sock: ssl.SSLSocket) -> None:
        """Raise SSLCertVerificationError unless the peer shows the certificate we trust."""
        pinned = self.fingerprint.replace(':', '').strip().lower()
        if pinned:
            seen = hashlib.sha256(sock.getpeercert(binary_form=True) or b'').hexdigest()
            if not secrets.compare_digest(seen, pinned):
                raise ssl.SSLCertVerificationError('the printer certificate does not match the pinned fingerprint')
        if self.ca_file is not None:
            subject = dict(item[0] for item in (sock.getpeercert() or {}).get('subject', ()))
            if subject.get('commonName') != self.serial:
                raise ssl.SSLCertVerificationError(
                    f'the certificate is for printer {subject.get("commonName")}, not {self.serial}'
                )


class ImplicitFtps(ftplib.FTP_TLS):
    """FTP with TLS from the first byte (port 990). The data channel resumes the control channel's TLS session:
    the printers refuse the transfer otherwise (like vsftpd's require_ssl_reuse)."""

    reuse_session = True

    def connect(self, host: str = '', port: int = 0, timeout: float = 30, source_address: Any = None) -> str:
        self.host, self.port, self.timeout = host, port, timeout
        raw = socket.create_connection((host, port), timeout)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile('r', encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - wrapped in TLS just below
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if self.reuse_session else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


def store_file(
    trust: PrinterTrust,
    address: tuple[str, int],
    access_code: str,
    local_path: Path,
    name: str,
    ftps_class: type[ImplicitFtps] = ImplicitFtps,
) -> None:
    """Upload local_path to the SD card's root as name. Blocking: run it in a thread."""
    ftp = ftps_class(context=trust.context(), timeout=30)
    try:
        ftp.connect(address[0], address[1], 30)
        ftp.login(USER, access_code)
        ftp.prot_p()
        ftp.voidcmd('TYPE I')
        try:
            _send(ftp, local_path, name)
        except OSError:
            ftp.voidresp()  # the printer's reason (e.g. 522, TLS session not reused) raises error_perm here
            raise
        ftp.voidresp()
        ftp.quit()
    except ftplib.error_perm as error:
        if str(error).startswith('530'):
            raise PrinterUnavailable('the printer refused the access code (FTPS)') from None
        raise PrinterError(f'the printer refused the upload: {error}') from None
    except (OSError, EOFError, ftplib.Error) as error:
        raise PrinterUnavailable(f'the upload to {address[0]}:{address[1]} failed: {error}') from None
    finally:
        ftp.close()


def _send(ftp: ftplib.FTP_TLS, local_path: Path, name: str) -> None:
    with local_path.open('rb') as source, ftp.transfercmd(f'STOR {name}') as conn:
        while chunk := source.read(65536):
            conn.sendall(chunk)
        try:  # close_notify, so no byte is lost; a printer that never answers it must not hang the upload
            conn.settimeout(5)
            conn.unwrap()
        except (OSError, ssl.SSLError):
            pass
