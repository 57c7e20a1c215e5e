"""The in-memory picture of now that pages bind to, and the events that announce changes."""
