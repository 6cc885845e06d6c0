"""What the authority remembers: the SQL models, delegations, people and API tokens, the
hash-chained audit trail and its checkpoints, and the auditors' queries."""
