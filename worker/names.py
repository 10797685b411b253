"""The one pattern for names that travel between nodes: cluster names, cache names and
singleton names (1-64 of A-Za-z0-9_.-). Pure; the config, the apps' APIs and the codecs all
check against this, so a name one accepts the others accept too."""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME_RULE = "1-64 of A-Za-z0-9_.-"
