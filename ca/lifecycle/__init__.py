"""What happens to certificates after issuance: STAR renewal (RFC 8739), renewal information
(RFC 9773), revocation of certificates, delegations and numbers, and CRLs (RFC 5280 §5)."""
