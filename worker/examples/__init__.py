"""Runnable example apps (`pyjk-worker --app worker.examples.<module>:make_app`)."""
