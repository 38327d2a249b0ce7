"""History: every result in the store, newest first; open one to download, edit or restore its settings."""

from __future__ import annotations

from core.ui.history import history_page
from core.ui.page import page_end, page_start

page_start(
    "History",
    ":material/history:",
    "Every result this studio has kept, with the settings that made it. Filter, open, reuse or delete.",
)
history_page()
page_end()
