"""app/ui/compat.py on this venv's Gradio (6.x); Gradio 5.45 itself runs in tests/test_gradio5_env.py."""
from __future__ import annotations

import pytest

from app.ui import compat


def test_this_generation():
    assert compat.MAJOR == 6 and compat.PRIVATE == {"api_visibility": "private"}
    assert compat.launch_kwargs(footer_links=["api"], server_port=1) == {"footer_links": ["api"], "server_port": 1}
    compat.check_supported()


@pytest.mark.parametrize("version", [(4, 44), (5, 44), (7, 0)])
def test_unsupported_gradio_refused_by_name(monkeypatch, version):
    monkeypatch.setattr(compat, "VERSION", version)
    with pytest.raises(RuntimeError, match=r"gradio .* is not supported: the launcher's UI runs on gradio >= 5\.45 and < 7"):
        compat.check_supported()


def test_gradio5_spellings(monkeypatch):
    monkeypatch.setattr(compat, "MAJOR", 5)
    assert compat.launch_kwargs(footer_links=["api"], server_port=1) == {"server_port": 1}
