"""HTTP edge: one function per ``operationId`` of ``openapi.yaml``; thin by design."""
