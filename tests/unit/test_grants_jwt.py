"""Session grants: PyJWT HS256 pinned, exp/jti/aud required, single use, replay store pruned."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from streamer.errors import BadInput, Unauthorized
from streamer.server.grants import AUDIENCE, Grants, ReplayStore, grant_request, signing_key

SECRET = "server-key-for-tests"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**over) -> dict:
    now = int(time.time())
    return {"aud": AUDIENCE, "exp": now + 60, "jti": "j1", "templates": ["astronaut"], **over}


async def test_a_grant_opens_one_session_on_its_templates():
    grants = Grants(SECRET)
    token, expires = grants.mint(("astronaut", "dog"), 60, max_session_s=900)
    assert expires - time.time() == pytest.approx(60, abs=2)
    grant = await grants.redeem(token, "dog")
    assert grant.templates == ("astronaut", "dog") and grant.max_session_s == 900
    with pytest.raises(Unauthorized, match="used already"):
        await grants.redeem(token, "astronaut")


async def test_wrong_template_is_refused_and_does_not_use_the_grant_up():
    grants = Grants(SECRET)
    token, _ = grants.mint(("astronaut",), 60)
    with pytest.raises(Unauthorized, match="not for template 'dog'"):
        await grants.redeem(token, "dog")
    assert (await grants.redeem(token, "astronaut")).templates == ("astronaut",)


async def test_expired_grant_is_refused():
    past = Grants(SECRET, clock=lambda: time.time() - 120)
    token, _ = past.mint(("astronaut",), 60)
    with pytest.raises(Unauthorized, match="expired"):
        await Grants(SECRET).redeem(token, "astronaut")


async def test_alg_none_is_refused():
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(Unauthorized, match="not valid"):
        await Grants(SECRET).redeem(token, "astronaut")


async def test_another_algorithm_with_the_same_key_is_refused():
    token = jwt.encode(_claims(), signing_key(SECRET), algorithm="HS512")
    with pytest.raises(Unauthorized, match="not valid"):
        await Grants(SECRET).redeem(token, "astronaut")
    good = jwt.encode(_claims(), signing_key(SECRET), algorithm="HS256")
    assert (await Grants(SECRET).redeem(good, "astronaut")).jti == "j1"  # the same claims under HS256 pass


async def test_tampered_payload_is_refused():
    token, _ = Grants(SECRET).mint(("astronaut",), 60)
    header, _, signature = token.split(".")
    forged = f"{header}.{_b64(_claims(templates=['astronaut', 'dog']))}.{signature}"
    with pytest.raises(Unauthorized, match="not valid"):
        await Grants(SECRET).redeem(forged, "dog")


async def test_another_secret_or_audience_is_refused():
    token, _ = Grants("another-server").mint(("astronaut",), 60)
    with pytest.raises(Unauthorized):
        await Grants(SECRET).redeem(token, "astronaut")
    other_aud = jwt.encode(_claims(aud="something-else"), signing_key(SECRET), algorithm="HS256")
    with pytest.raises(Unauthorized):
        await Grants(SECRET).redeem(other_aud, "astronaut")
    raw_key = jwt.encode(_claims(), SECRET, algorithm="HS256")  # signed with the key itself, not the derived one
    with pytest.raises(Unauthorized):
        await Grants(SECRET).redeem(raw_key, "astronaut")


@pytest.mark.parametrize("missing", ["exp", "jti", "aud"])
async def test_exp_jti_and_audience_are_required(missing):
    claims = _claims()
    del claims[missing]
    token = jwt.encode(claims, signing_key(SECRET), algorithm="HS256")
    with pytest.raises(Unauthorized):
        await Grants(SECRET).redeem(token, "astronaut")


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "Bearer x", "\udcff", "." * 5000])
async def test_junk_is_a_401_not_a_crash(junk):
    with pytest.raises(Unauthorized):
        await Grants(SECRET).redeem(junk, "astronaut")


def test_the_replay_store_forgets_a_grant_once_it_has_expired():
    now = [1000.0]
    store = ReplayStore(clock=lambda: now[0])
    assert store.claim("a", expires=1060) and not store.claim("a", expires=1060)
    store.claim("b", expires=2000)
    now[0] = 1061.0
    store.prune()
    assert len(store) == 1  # "a" is gone: its grant can no longer be presented anyway
    assert not store.claim("b", expires=2000)


def test_grant_request_bodies():
    r = grant_request({"templates": ["astronaut"]}, 60, 3600)
    assert r.templates == ("astronaut",) and r.ttl_s == 60 and r.max_session_s is None
    assert grant_request({"templates": ["a"], "ttl_s": 3600, "max_session_s": 900}, 60, 3600).max_session_s == 900
    for bad in (
        {},
        {"templates": []},
        {"templates": "astronaut"},
        {"templates": [1]},
        {"templates": ["a"], "ttl_s": 3601},
        {"templates": ["a"], "ttl_s": 0},
        {"templates": ["a"], "ttl_s": True},
        {"templates": ["a"], "max_session_s": -1},
        {"templates": ["a"], "max_session_s": "9"},
    ):
        with pytest.raises(BadInput):
            grant_request(bad, 60, 3600)
