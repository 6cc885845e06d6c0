"""Issuance: certificate profiles and their lint, the one issuance pipeline, the signers (file
keys, PKCS#11) and the certificate-transparency client (RFC 6962)."""
