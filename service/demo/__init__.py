"""`make demo`: the whole lifecycle on this machine, with local stand-ins for Redis and AWS."""
