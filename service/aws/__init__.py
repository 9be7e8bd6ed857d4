"""boto3 adapters, one module per target kind; clients are passed in, never built at import."""
