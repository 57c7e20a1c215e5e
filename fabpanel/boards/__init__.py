"""Fab-O-Matic boards over MQTT: the gateway that answers them, the embedded broker, a board simulator."""
