"""The stages of ``scripts/build_demo_assets.py``, one module each."""
