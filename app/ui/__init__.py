"""One module per Gradio tab; webui.py assembles them. Only this package and webui.py import gradio."""
