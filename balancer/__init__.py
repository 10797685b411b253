"""The balancer: mod_jk's lb on asyncio. See docs/architecture.md."""

from pyjk.hotpath import use_sources_if_asked

# PYJK_PURE=1: the .py sources of the compiled hot path, before any of them is imported
use_sources_if_asked()
