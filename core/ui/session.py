"""Work is never lost: a page switch keeps every input (widgets use `persist_state="session"`, pages keep
photos, strokes and job ids in session_state), and a reload brings the session back.

Every page calls `keep_session()` first and `save_session()` last. The session's token rides in the
URL (`?session=...`); its work (the pages' settings, strokes, photos, job ids) is saved server-side in
a bounded, expiring core.sessions.SessionStore after each run, only when it changed. A fresh browser
session that arrives with a known token (a reload, a bookmark) restores it before any widget is drawn.
The queue session follows the token, so a reloaded page reattaches to its running jobs and can cancel them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import streamlit as st

from core.clients import page_session
from core.sessions import SessionStore, new_token, valid_token
from core.ui import state
from core.ui.uploads import LoadedImage, load_named

log = logging.getLogger(__name__)

TOKEN_PARAM = "session"
TOKEN_KEY, RESTORED_KEY, SAVED_KEY = "studio.token", "studio.restored", "studio.saved"
PAGE_PREFIXES = ("home.", "generate.", "inpaint.", "batch.", "prompts.", "compare.", "history.")
NOT_SAVED = ("-memo", ".decoded", ".upload-seen")  # caches of what is saved anyway
# Widgets whose value a page may set through session_state (buttons, uploaders and components may not).
SETTABLE = {"bool_value", "double_value", "int_value", "string_value", "double_array_value", "string_array_value"}


@st.cache_resource(show_spinner=False)
def session_store() -> SessionStore:
    return SessionStore(state.settings().cache_dir / "sessions")


def keep_session() -> str:
    """The session's token: from session_state, else from the URL (then the saved work is restored),
    else a new one. Keeps the token in the URL, which a page switch drops."""
    token = st.session_state.get(TOKEN_KEY)
    if token is None:
        from_url = st.query_params.get(TOKEN_PARAM)
        token = from_url if valid_token(from_url) else new_token()
        st.session_state[TOKEN_KEY] = token
        # The queue session (core.ui.state.session_id): this tab, and the address its limit counts against.
        st.session_state["studio.session"] = page_session(token[:16], st.context.ip_address)
        if token == from_url:
            _restore(token)
    if st.query_params.get(TOKEN_PARAM) != token:
        st.query_params[TOKEN_PARAM] = token
    return token


def save_session() -> None:
    """Save the pages' work if it changed since the last save (cheap when it did not)."""
    token = st.session_state.get(TOKEN_KEY)
    if token is None:
        return
    store = session_store()
    values = {}
    for key in list(st.session_state.keys()):
        if not isinstance(key, str) or not key.startswith(PAGE_PREFIXES) or key.endswith(NOT_SAVED):
            continue
        if not _settable(key):
            continue
        encoded = _encode(st.session_state[key], store, token)
        if encoded is not _SKIP:
            values[key] = encoded
    snapshot = json.dumps(values, sort_keys=True, separators=(",", ":"))
    if st.session_state.get(SAVED_KEY) == snapshot:
        return
    if store.save(token, {"values": values}):
        st.session_state[SAVED_KEY] = snapshot


_SKIP = object()


def _encode(value: Any, store: SessionStore, token: str) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, LoadedImage):
        memo = st.session_state.setdefault("studio.blobs", {})
        digest = memo.get(value.digest) or store.put_blob(token, value.data)
        if digest is None:
            return _SKIP
        memo[value.digest] = digest
        return {"$image": digest, "name": value.name}
    if isinstance(value, list | tuple):
        items = [_encode(item, store, token) for item in value]
        return _SKIP if any(item is _SKIP for item in items) else items
    if isinstance(value, dict) and all(isinstance(name, str) for name in value) and "$image" not in value:
        items = {name: _encode(item, store, token) for name, item in value.items()}
        return _SKIP if any(item is _SKIP for item in items.values()) else items
    return _SKIP


def _decode(value: Any, store: SessionStore, token: str) -> Any:
    if isinstance(value, list):
        return [_decode(item, store, token) for item in value]
    if isinstance(value, dict) and "$image" in value:
        data = store.get_blob(token, value["$image"])
        if data is None:
            raise LookupError("image no longer stored")
        return load_named(str(value.get("name", "photo")), data, state.settings().image_limits)
    if isinstance(value, dict):
        return {name: _decode(item, store, token) for name, item in value.items()}
    return value


def _restore(token: str) -> None:
    store = session_store()
    saved = store.load(token)
    if not saved or not isinstance(saved.get("values"), dict):
        return
    restored = 0
    for key, value in saved["values"].items():
        if not isinstance(key, str) or not key.startswith(PAGE_PREFIXES):
            continue
        try:
            st.session_state[key] = _decode(value, store, token)
            restored += 1
        except Exception:  # an image evicted or no longer valid: that one value is not restored
            log.info("session value %s not restored", key, exc_info=True)
    st.session_state[RESTORED_KEY] = restored


def _settable(key: str) -> bool:
    """Whether `key` is a plain value or a widget whose value may be set back (not a button, an
    uploader or a component)."""
    try:
        from streamlit.runtime.state.session_state_proxy import get_session_state

        session = get_session_state()._state
        widget_id = session.get_widget_id_from_key(key)
        if widget_id is None:
            return True
        metadata = session.get_widget_metadata(widget_id)
        return metadata is None or metadata.value_type in SETTABLE
    except Exception:  # Streamlit's internals moved: save plain values only
        return not any(key.endswith(suffix) for suffix in (".upload", ".cancel", ".canvas"))


__all__ = ["keep_session", "save_session", "session_store"]
