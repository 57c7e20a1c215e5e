"""Printer adapters: one async driver per printer family, and the fleet that runs one worker per printer."""
