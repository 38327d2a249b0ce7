"""Who may use the pages. The API has its key (`STUDIO_API_KEY`); without this, anyone who can open a
page could drive the same queue. The operator protects the pages in one of two ways:

- an OIDC provider, with Streamlit's own login: an `[auth]` section in `.streamlit/secrets.toml`
  (redirect_uri, cookie_secret, client_id, client_secret, server_metadata_url); visitors sign in;
- a shared password: `page_password` in the secrets (or `STUDIO_PAGE_PASSWORD`), asked once per browser
  session and compared in constant time.

With neither, the pages are open, as before.
"""

from __future__ import annotations

import hmac
import logging

import streamlit as st

from core.settings import Settings

log = logging.getLogger(__name__)

PASSWORD_ENV = "STUDIO_PAGE_PASSWORD"
_LET_IN = "studio.access"


def require_access() -> None:
    """Stop this page's run until the visitor is let in (no-op when the pages are open)."""
    if _oidc_configured():
        if not st.user.is_logged_in:
            st.info("Canvas Studio is private: sign in to use it.")
            st.button("Sign in", on_click=st.login, type="primary")
            st.stop()
        return
    password_setting = Settings.from_env().page_password
    password = "" if password_setting is None else password_setting.get_secret_value()
    if not password or st.session_state.get(_LET_IN) is True:
        return
    with st.form("studio.access.form"):
        st.info("Canvas Studio is private: enter the password the operator gave you.")
        typed = st.text_input("Password", type="password", key="studio.access.password")
        if st.form_submit_button("Enter", type="primary"):
            if hmac.compare_digest(typed.encode("utf-8"), password.encode("utf-8")):
                st.session_state[_LET_IN] = True
                st.session_state.pop("studio.access.password", None)
                st.rerun()
            st.error("That password is not right.")
    st.stop()


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: no login configured
        return False


__all__ = ["PASSWORD_ENV", "require_access"]
