"""The live sandbox: outside agents act through an HTTP API (issue 7; in progress)."""
