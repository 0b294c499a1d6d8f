"""Test stand-in for IndexTTS2's `indextts` package (v2.0.0 interface, tiny random compute).

IndexTTS2's weights cannot be downloaded here, so models/indextts2.py is tested against this
package. Only `indextts.infer_v2.IndexTTS2` is provided. Never put this directory on sys.path
outside the tests.
"""
