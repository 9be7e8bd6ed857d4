"""The desired-state engine: plan a target from the database, write it, verify it, record it.

`target.sync_target` is the entry point; `state` is the database side (snapshot before, transitions
after), and one module per kind of target does the IAM side: `document` (trust and inline policies),
`members` (group memberships), `sessions` (the deny that cuts already-issued sessions).
"""
