"""The pages behind the operator's shared password: nothing of a page runs until the visitor gives it."""

from __future__ import annotations

import pytest

from core.ui.access import PASSWORD_ENV
from tests.app_helpers import open_page, texts


@pytest.fixture
def protected(monkeypatch, fresh_app):
    monkeypatch.setenv(PASSWORD_ENV, "open sesame")


@pytest.mark.parametrize("page", [None, "1_Generate.py", "2_Inpaint.py", "3_Batch.py"])
def test_a_protected_page_shows_only_the_password_form(protected, page):
    at = open_page(page)
    assert not at.exception
    assert [field.label for field in at.text_input] == ["Password"]
    assert not at.text_area and not at.slider  # none of the page ran


def test_the_right_password_lets_the_session_in_and_a_wrong_one_does_not(protected):
    at = open_page("1_Generate.py")
    at.text_input(key="studio.access.password").input("sesame")
    at.button[0].click().run()
    assert "That password is not right." in texts(at.error)
    assert not at.text_area
    at.text_input(key="studio.access.password").input("open sesame")
    at.button[0].click().run()
    assert not at.exception
    assert at.text_area(key="generate.prompt")  # the page itself now runs
    at.run()
    assert at.text_area(key="generate.prompt")  # and stays open for this session


def test_without_a_password_the_pages_are_open(fresh_app, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    at = open_page("1_Generate.py")
    assert at.text_area(key="generate.prompt") and not [field for field in at.text_input if field.label == "Password"]
