"""The lb's runtime settings: a mutable copy of the LbConfig the status worker may edit.

mod_jk lets the status worker change an lb's retries, retry_interval, recover_time,
error_escalation_time, max_reply_timeouts, sticky_session, sticky_session_force, method and
lock at runtime (reference modjk.md §5.1); the engine always reads them from here, never from
the frozen config. Edits are validated; mod_jk's minimums (§1.5) are applied at load.
"""

from __future__ import annotations

from balancer.config.model import LbConfig, Lock, Method
from balancer.lb.errors import InvalidSetting


class LbSettings:
    """Compiled (settings.pxd), an extension type: the plan's per-request reads are the
    ``read_*`` methods at the end, C calls that a ``SharedSettings`` (shared.py) overrides to
    read its shared record (see member.py's ``Member`` for why they are methods)."""

    sticky_session: bool
    sticky_session_force: bool
    method: Method
    lock: Lock  # shown and editable; one event loop needs no lock
    retries: int  # rounds (min 1)
    lb_retries: int  # members per round (min 1)
    retry_interval: int  # ms between rounds
    recover_time: int  # s (min 1)
    error_escalation_time: int  # s, 0 = at once
    max_reply_timeouts: int
    session_cookie: str
    session_path: str
    set_session_cookie: bool
    session_cookie_path: str

    def __init__(
        self,
        sticky_session: bool = True,
        sticky_session_force: bool = False,
        method: Method = Method.REQUEST,
        lock: Lock = Lock.OPTIMISTIC,
        retries: int = 2,
        lb_retries: int = 2,
        retry_interval: int = 100,
        recover_time: int = 60,
        error_escalation_time: int = 30,
        max_reply_timeouts: int = 0,
        session_cookie: str = "JSESSIONID",
        session_path: str = ";jsessionid",
        set_session_cookie: bool = False,
        session_cookie_path: str = "/",
    ) -> None:
        self.sticky_session = sticky_session
        self.sticky_session_force = sticky_session_force
        self.method = method
        self.lock = lock
        self.retries = retries
        self.lb_retries = lb_retries
        self.retry_interval = retry_interval
        self.recover_time = recover_time
        self.error_escalation_time = error_escalation_time
        self.max_reply_timeouts = max_reply_timeouts
        self.session_cookie = session_cookie
        self.session_path = session_path
        self.set_session_cookie = set_session_cookie
        self.session_cookie_path = session_cookie_path

    @classmethod
    def from_config(cls, config: LbConfig) -> LbSettings:
        return cls(
            sticky_session=config.sticky_session,
            sticky_session_force=config.sticky_session_force,
            method=config.method,
            lock=config.lock,
            retries=max(1, config.retries),
            lb_retries=max(1, config.lb_retries),
            retry_interval=max(0, config.retry_interval),
            recover_time=max(1, config.recover_time),
            error_escalation_time=max(0, config.error_escalation_time),
            max_reply_timeouts=max(0, config.max_reply_timeouts),
            session_cookie=config.session_cookie,
            session_path=config.session_path,
            set_session_cookie=config.set_session_cookie,
            session_cookie_path=config.session_cookie_path,
        )

    def __repr__(self) -> str:
        # getattr, not self.x: compiled, a SharedSettings' fields are not its C fields
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"LbSettings({shown})"

    def validated(self, where: str, name: str, value: object) -> object:
        """``value`` checked for field ``name``; raises InvalidSetting naming ``where``."""
        if name not in _FIELDS:
            raise InvalidSetting(where, name, value, f"one of {', '.join(sorted(_FIELDS))}")
        return check_value(where, name, value, _RULES[name])

    # -- the plan's per-request reads (SharedSettings overrides every one) ---------------------

    def read_method(self) -> Method:
        return self.method

    def read_lb_retries(self) -> int:
        return self.lb_retries

    def read_set_session_cookie(self) -> bool:
        return self.set_session_cookie

    # the session lookup's reads (sticky.session_id), once per request
    def read_sticky_session(self) -> bool:
        return self.sticky_session

    def read_session_path(self) -> str:
        return self.session_path

    def read_session_cookie(self) -> str:
        return self.session_cookie


# name -> (type, minimum); the minimum only for ints
_RULES: dict[str, tuple[type, int | None]] = {
    "sticky_session": (bool, None),
    "sticky_session_force": (bool, None),
    "method": (Method, None),
    "lock": (Lock, None),
    "retries": (int, 1),
    "lb_retries": (int, 1),
    "retry_interval": (int, 0),
    "recover_time": (int, 1),
    "error_escalation_time": (int, 0),
    "max_reply_timeouts": (int, 0),
    "session_cookie": (str, None),
    "session_path": (str, None),
    "set_session_cookie": (bool, None),
    "session_cookie_path": (str, None),
}
# LbSettings' fields, in declaration order (an extension type keeps no annotations): a unit
# test checks these are exactly the class's
FIELDS: tuple[str, ...] = tuple(_RULES)
_FIELDS = frozenset(_RULES)


_INT64_MAX = (1 << 63) - 1


def check_value(where: str, name: str, value: object, rule: tuple[type, int | None]) -> object:
    """Type and range check shared by lb and member edits."""
    kind, minimum = rule
    if kind is int:
        # bool is an int subclass; an lb count given as True is a caller bug
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidSetting(where, name, value, "an integer")
        if minimum is not None and value < minimum:
            raise InvalidSetting(where, name, value, f"an integer >= {minimum}")
        if value > _INT64_MAX:  # the fields are 64-bit C integers (settings.pxd, member.pxd)
            raise InvalidSetting(where, name, value, f"an integer <= {_INT64_MAX}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise InvalidSetting(where, name, value, "a string")
        if name in ("session_cookie", "session_path") and not value:
            raise InvalidSetting(where, name, value, "a non-empty name")
        return value
    if not isinstance(value, kind):
        raise InvalidSetting(where, name, value, f"a {kind.__name__}")
    return value
