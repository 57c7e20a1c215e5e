"""The embedded MQTT broker (amqtt): lets a fresh install run with nothing else installed."""

from __future__ import annotations

import errno
import logging
import socket

log = logging.getLogger(__name__)


class BrokerPortTaken(RuntimeError):
    """The embedded broker's port is used by another program (often a Mosquitto already running)."""


def port_taken_message(port: int, source: object = None) -> str:
    """What to tell the user when the embedded broker's port is taken: both ways out, with the settings' names."""
    where = f' in {source}' if source else ''
    return (f'port {port} is already in use, so the embedded MQTT broker cannot start.\n'
            f'  If a broker (e.g. Mosquitto) runs there, use it: set [MQTT] broker = "localhost"{where} '
            f'or FABPANEL_MQTT__BROKER=localhost.\n'
            f'  Otherwise give the embedded broker another port: [MQTT] port{where} or FABPANEL_MQTT__PORT '
            f'(the boards must then be configured for that port too; their default is 1883).')


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ':' in host else socket.AF_INET


def port_free(port: int, host: str = '0.0.0.0') -> bool:  # noqa: S104 - boards on the lab network must reach it
    """True when a listener could bind host:port now (a socket in TIME_WAIT does not count as taken)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def _address_in_use(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class EmbeddedBroker:
    def __init__(self, port: int, bind: str = '0.0.0.0') -> None:  # noqa: S104
        self.port = port
        self.bind = bind
        self._broker = None

    @property
    def address(self) -> str:
        host = f'[{self.bind}]' if ':' in self.bind else self.bind
        return f'{host}:{self.port}'

    async def start(self) -> None:
        if not port_free(self.port, self.bind):
            raise BrokerPortTaken(port_taken_message(self.port))
        from amqtt.broker import Broker  # imported late: only this mode needs it

        for name in ('amqtt', 'transitions'):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            'listeners': {'default': {'type': 'tcp', 'bind': self.address, 'max_connections': 2000}},
            'plugins': {'amqtt.plugins.authentication.AnonymousAuthPlugin': {'allow_anonymous': True}},
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as e:
            if _address_in_use(e):  # taken between the check and the bind
                raise BrokerPortTaken(port_taken_message(self.port)) from e
            raise
        self._broker = broker
        log.info('embedded MQTT broker listening on %s', self.address)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
