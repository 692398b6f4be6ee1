"""A template that cannot be prepared is listed as not ready, with the reason; the rest serve."""

from __future__ import annotations

import shutil

import aiohttp
import cv2
import numpy as np

from streamer import resources
from streamer.config import Settings
from tests.integration.conftest import live_server


async def test_a_faceless_template_is_listed_not_ready_and_the_others_serve(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    shutil.copy(resources.TEMPLATES / "astronaut.png", templates / "astronaut.png")
    cv2.imwrite(str(templates / "wall.png"), np.full((256, 256, 3), 128, np.uint8))
    with live_server(Settings(templates_dir=templates, cache_dir=tmp_path / "cache")) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/api/templates") as r:
                listed = {t["id"]: t for t in (await r.json())["templates"]}
            async with http.get(server.url + "/readyz") as r:
                assert r.status == 200
            async with http.get(server.url + "/api/templates/wall/preview.jpg") as r:
                assert r.status == 404
            async with http.get(server.url + "/api/stats") as r:
                reasons = (await r.json())["startup"]["failed"]  # keyless: the operator's view
        assert listed["astronaut"]["ready"] is True and listed["astronaut"]["frames"] == 1
        assert listed["wall"]["ready"] is False and "could not be prepared" in listed["wall"]["error"]
        assert str(tmp_path) not in str(listed)  # no exception text, no paths, for the page
        assert "face" in reasons["wall"].lower()
