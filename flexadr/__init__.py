"""Shared plumbing of flexadr: the one clock, the one OpenADR schema check, the demo."""
