"""Bolt listeners, one module per surface: the command, approvals, the requester's buttons, App Home."""
