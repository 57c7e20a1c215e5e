"""The embedded MQTT broker (amqtt): lets a fresh install run with nothing else installed."""

from __future__ import annotations

import logging
import socket

log = logging.getLogger(__name__)


class BrokerPortTaken(RuntimeError):
    """The embedded broker's port is used by another program (often a Mosquitto already running)."""


def port_free(port: int, host: str = '0.0.0.0') -> bool:  # noqa: S104 - boards on the lab network must reach it
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
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


class EmbeddedBroker:
    def __init__(self, port: int, bind: str = '0.0.0.0') -> None:  # noqa: S104
        self.port = port
        self.bind = bind
        self._broker = None

    async def start(self) -> None:
        if not port_free(self.port, self.bind):
            raise BrokerPortTaken(
                f'port {self.port} is already in use, so the embedded MQTT broker cannot start. Either point '
                f'fabpanel at the broker that runs there ([MQTT] broker = "localhost" or FABPANEL_MQTT__BROKER=localhost) '
                f'or give the embedded broker another port ([MQTT] port or FABPANEL_MQTT__PORT); boards connect '
                f'to 1883.')
        from amqtt.broker import Broker  # imported late: only this mode needs it

        for name in ('amqtt', 'transitions'):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            'listeners': {'default': {'type': 'tcp', 'bind': f'{self.bind}:{self.port}', 'max_connections': 2000}},
            'plugins': {'amqtt.plugins.authentication.AnonymousAuthPlugin': {'allow_anonymous': True}},
        }
        self._broker = Broker(config)
        await self._broker.start()
        log.info('embedded MQTT broker listening on %s:%d', self.bind, self.port)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
