"""The operator console (vtn/console/app.py; docs/console.md)."""
