"""Tests of fabpanel/services. (The test servers — Mosquitto, SMTP, free ports — are in tests/support.py.)"""
