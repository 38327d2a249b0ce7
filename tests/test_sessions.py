"""The session store that lets a reload restore a page's work: round trip, bounds, expiry, and tokens
that can never name a path outside the store."""

from __future__ import annotations

import os
import time

from core.sessions import SessionStore, new_token, valid_token


def test_state_and_images_round_trip_and_unknown_or_forged_tokens_give_nothing(tmp_path):
    store = SessionStore(tmp_path)
    token = new_token()
    digest = store.put_blob(token, b"photo bytes")
    assert store.save(token, {"values": {"inpaint.source": {"$image": digest}, "inpaint.prompt": "a boat"}})
    assert store.load(token) == {"values": {"inpaint.source": {"$image": digest}, "inpaint.prompt": "a boat"}}
    assert store.get_blob(token, digest) == b"photo bytes"
    assert store.load(new_token()) is None
    for forged in ("../../etc", "a/b" * 10, "", None, "x" * 200):
        assert not valid_token(forged)
        assert store.load(forged) is None and not store.save(forged, {}) and store.put_blob(forged, b"x") is None
    assert store.get_blob(token, "../state.json") is None


def test_sessions_expire_and_the_oldest_go_beyond_the_cap(tmp_path):
    store = SessionStore(tmp_path, max_sessions=2, ttl_s=3600)
    first, second, third = new_token(), new_token(), new_token()
    for index, token in enumerate((first, second)):
        store.save(token, {"n": index})
        os.utime(tmp_path / token / "state.json", (time.time() - 100 + index, time.time() - 100 + index))
    store.save(third, {"n": 2})  # a third session: the least recently saved goes
    assert store.load(first) is None and store.load(second) == {"n": 1} and store.load(third) == {"n": 2}
    os.utime(tmp_path / second / "state.json", (time.time() - 7200, time.time() - 7200))
    assert store.load(second) is None and not (tmp_path / second).exists()  # expired


def test_a_session_holds_a_bounded_amount_of_images_and_drops_what_it_no_longer_uses(tmp_path):
    store = SessionStore(tmp_path, max_session_bytes=1000)
    token = new_token()
    assert store.put_blob(token, b"x" * 1001) is None  # larger than the whole budget: refused
    old = store.put_blob(token, b"a" * 600)
    new = store.put_blob(token, b"b" * 600)  # over budget together: the older one goes first
    assert store.get_blob(token, old) is None and store.get_blob(token, new) == b"b" * 600
    assert not store.save(token, {"huge": "x" * (3 * 1024 * 1024)})  # state documents are bounded too
