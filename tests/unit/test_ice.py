"""ICE servers as settings, coturn REST credentials, WHEP Link headers; the proxy rules."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from streamer import ice
from streamer.config import load_settings
from streamer.errors import BadInput
from streamer.server.http import client_address, trusted


def test_urls_with_credentials_transport_and_default_ports():
    stun, turn, turns = ice.parse_ice_servers(
        ("stun:stun.example.org", "turn:us%40er:p%3Ass@turn.example.org:3479?transport=tcp", "turns:t.example.org")
    )
    assert (stun.scheme, stun.host, stun.port, stun.username) == ("stun", "stun.example.org", 3478, None)
    assert (turn.host, turn.port, turn.transport) == ("turn.example.org", 3479, "tcp")
    assert (turn.username, turn.credential) == ("us@er", "p:ss")
    assert turn.url == "turn:turn.example.org:3479?transport=tcp"  # no credentials in the URL itself
    assert (turns.port, turns.transport) == (5349, "tcp")


@pytest.mark.parametrize(
    "bad",
    ["http://x", "stun:", "stun:host?transport=tcp", "stun:u:p@host", "turn:host:99999", "turn:host?transport=sctp"],
)
def test_bad_urls_are_start_up_errors(bad):
    with pytest.raises(BadInput, match="ice server"):
        ice.parse_ice_url(bad)


def test_the_environment_variable_holds_a_comma_separated_list():
    s = load_settings(environ={"STREAMER_ICE_SERVERS": "stun:a.example:3478, turn:u:p@b.example?transport=tcp"})
    assert s.ice_servers == ("stun:a.example:3478", "turn:u:p@b.example?transport=tcp")
    with pytest.raises(BadInput):
        load_settings(environ={"STREAMER_ICE_SERVERS": "stun:a.example,ftp://nope"})


def test_coturn_rest_credentials_expire_and_verify_with_the_shared_secret():
    servers = ice.servers_for(("turn:turn.example.org", "turn:fixed:pw@t2.example"), "s3cret", 600, "sess1", now=1000)
    user, password = servers[0].username, servers[0].credential
    assert user == "1600:sess1"
    expected = base64.b64encode(hmac.new(b"s3cret", user.encode(), hashlib.sha1).digest()).decode()
    assert password == expected  # what coturn's use-auth-secret computes
    assert (servers[1].username, servers[1].credential) == ("fixed", "pw")  # static ones are kept


def test_link_headers_and_page_json_hold_turn_credentials_only_when_allowed():
    servers = ice.servers_for(("stun:s.example", "turn:t.example"), "k", 60, now=0)
    assert ice.link_header(servers[0], False) == '<stun:s.example:3478>; rel="ice-server"'
    assert ice.link_header(servers[1], False) is None
    link = ice.link_header(servers[1], True)
    assert link.startswith('<turn:t.example:3478>; rel="ice-server"')
    assert 'username="60:viewer"' in link and 'credential-type="password"' in link
    assert ice.browser_json(servers, False) == [{"urls": "stun:s.example:3478"}]
    assert ice.browser_json(servers, True)[1]["username"] == "60:viewer"


def test_a_public_bind_without_ice_servers_is_warned_about():
    assert ice.unreachable_warning(True, ()) is None
    assert ice.unreachable_warning(False, ("stun:s.example",)) is None
    assert "1:1 NAT" in ice.unreachable_warning(False, ())


def test_forwarded_for_is_read_from_the_right_past_our_proxies():
    proxies = ("10.0.0.0/8", "127.0.0.1")
    assert trusted("10.1.2.3", proxies) and not trusted("203.0.113.1", proxies) and not trusted(None, proxies)
    assert client_address("198.51.100.7, 203.0.113.9, 10.0.0.2", proxies) == "203.0.113.9"  # a client can't spoof
    assert client_address("10.0.0.5", proxies) == "10.0.0.5"
    assert client_address("junk", proxies) is None and client_address(None, proxies) is None
