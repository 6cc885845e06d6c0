"""Telephone numbers: the TNAuthList codec and TN-scope algebra (RFC 8226 §9, RFC 9060), and the
PASSporT claim constraints a certificate carries (RFC 8226 §8, RFC 9118). Pure values: no
database, no keys."""
