"""A minimal implicit-FTPS server (TLS from the first byte, as Bambu printers serve on port 990) that, like the
printers, refuses a data channel that does not resume the control channel's TLS session."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.support import free_port


class ImplicitFtpsServer:
    def __init__(self, certfile: Path, keyfile: Path, user: str, password: str) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.user, self.password = user, password
        self.port = free_port()
        self.files: dict[str, bytes] = {}
        self.failed_logins = 0
        self.passwords_received = 0
        self.refused_without_reuse = 0
        self._listener: socket.socket | None = None

    def start(self) -> None:
        self._listener = socket.create_server(('127.0.0.1', self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(30)
        try:
            with self.context.wrap_socket(raw, server_side=True) as control:
                self._session(control)
        except (OSError, ssl.SSLError):
            pass

    def _session(self, control: ssl.SSLSocket) -> None:
        def reply(line: str) -> None:
            control.sendall(f'{line}\r\n'.encode())

        reply('220 Bambu FTP server ready')
        reader, user, logged_in, passive = control.makefile('rb'), '', False, None
        for raw_line in reader:
            command, _, argument = raw_line.decode().strip().partition(' ')
            command = command.upper()
            if command == 'USER':
                user = argument
                reply('331 Please specify the password.')
            elif command == 'PASS':
                self.passwords_received += 1
                logged_in = user == self.user and argument == self.password
                self.failed_logins += not logged_in
                reply('230 Login successful.' if logged_in else '530 Login incorrect.')
            elif command == 'QUIT':
                reply('221 Goodbye.')
                return
            elif not logged_in:
                reply('530 Please login with USER and PASS.')
            elif command in ('PBSZ', 'TYPE'):
                reply('200 OK.')
            elif command == 'PROT':
                reply('200 PROT now Private.' if argument == 'P' else '536 Only PROT P here.')
            elif command == 'PASV':
                passive = socket.create_server(('127.0.0.1', 0))
                port = passive.getsockname()[1]
                reply(f'227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).')
            elif command == 'STOR' and passive is not None:
                reply('150 Ok to send data.')
                reply(self._receive(passive, argument))
                passive.close()
                passive = None
            else:
                reply('502 Command not implemented.')

    def _receive(self, passive: socket.socket, name: str) -> str:
        passive.settimeout(10)
        raw, _ = passive.accept()
        raw.settimeout(30)
        with self.context.wrap_socket(raw, server_side=True) as data:
            if not data.session_reused:
                self.refused_without_reuse += 1
                return '522 SSL connection failed: session reuse required'
            chunks = []
            while chunk := data.recv(65536):
                chunks.append(chunk)
            try:
                data.unwrap()  # answer the client's close_notify
            except (OSError, ssl.SSLError):
                pass
        self.files[name.lstrip('/')] = b''.join(chunks)
        return '226 Transfer complete.'
