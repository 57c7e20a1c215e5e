"""Use cases: validate, ask the core, write one transaction, then update live state and announce it."""
