"""The wiring wing: the per-request hook (service), clip history (store), Prometheus metrics,
snapshot runs and the Gradio UI (app/ui/). Ground rooms (models/, tracing/, tuning/) never import
from here; only app/ui/ and webui.py import gradio (tests/test_architecture.py holds both rules)."""
