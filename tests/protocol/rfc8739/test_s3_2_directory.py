"""RFC 8739 §3.2: capability discovery in the directory's ``meta``."""

from __future__ import annotations

from acme_server import create_app
from protocol.support import with_policy


def test_s3_2_directory_meta_advertises_auto_renewal(client):
    """"The "auto-renewal" object MUST be present if the server supports STAR": min-lifetime and
    max-duration in seconds (the policy minimum and [acme] auto_renewal_max_duration)."""
    meta = client.get("/acme/directory").get_json()["meta"]
    assert meta["auto-renewal"] == {"min-lifetime": 300, "max-duration": 30 * 86400, "allow-certificate-get": True}


def test_s3_2_directory_has_no_auto_renewal_when_star_is_off(home):
    off = with_policy(home, "acme", auto_renewal_max_duration="0s")
    meta = create_app(off).test_client().get("/acme/directory").get_json()["meta"]
    assert "auto-renewal" not in meta


def test_s3_4_directory_says_whether_unauthenticated_get_is_offered(home):
    """§3.4: the server "states its availability ... by setting the allow-certificate-get
    attribute" in the directory's auto-renewal object."""
    no_get = with_policy(home, "acme", auto_renewal_allow_certificate_get=False)
    meta = create_app(no_get).test_client().get("/acme/directory").get_json()["meta"]
    assert meta["auto-renewal"]["allow-certificate-get"] is False


def test_s3_2_a_policy_written_before_star_turns_it_off(home):
    """A policy file without the STAR keys (written before STAR existed) loads, with STAR off."""
    text = home.policy_path.read_text()
    kept = [line for line in text.splitlines() if not line.startswith("auto_renewal_")]
    home.policy_path.write_text("\n".join(kept) + "\n")
    meta = create_app(type(home)(home.path)).test_client().get("/acme/directory").get_json()["meta"]
    assert "auto-renewal" not in meta
