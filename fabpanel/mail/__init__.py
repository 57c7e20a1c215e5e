"""Outgoing e-mail: templates per language and an SMTP sender (aiosmtplib)."""
