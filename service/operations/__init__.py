"""Use cases, one per module, keyword-only; the rules they apply live in service.core."""
