# C types for balancer/lb/plan.py (Cython's pure-Python mode; see setup.py). RequestPlan is an
# extension type: its fields are C struct members and its helpers C calls, made once per
# request on the hot path (plan, first Forward, response head, finish). The engine is typed, so
# its per-request methods (count_choice, open_forward, close_forward ...) are C calls too, as
# are best_from (choice.pxd) and the session lookup (sticky.pxd).
cimport cython
from balancer.config.rules cimport RuleExtensions
from balancer.lb.choice cimport best_from, takes_requests
from balancer.lb.decisions cimport Forward, RequestFacts, new_forward
from balancer.lb.engine cimport LbEngine
from balancer.lb.member cimport Member
from balancer.lb.settings cimport LbSettings
from balancer.lb cimport sticky as st
from balancer.lb.sticky cimport session_routes, session_span, session_text

cdef object _ACTIVE
cdef str _ACTIVE_VALUE
cdef Py_ssize_t _SPAN_NONE

cdef class RequestPlan:
    cdef LbEngine _engine
    cdef public RequestFacts facts
    cdef bytes _sid
    cdef Py_ssize_t _sid_at
    cdef Py_ssize_t _sid_end
    cdef Py_ssize_t _route_at
    cdef bint _has_session
    cdef Py_ssize_t _route_hit
    cdef object _session
    cdef list _routes
    cdef list _states
    cdef Py_ssize_t _attempt
    cdef Py_ssize_t _round
    cdef bint _forced
    cdef double _now
    cdef object _open
    cdef Py_ssize_t _open_index
    cdef Py_ssize_t _open_try
    cdef int _head_status
    cdef object _verdict
    cdef public int status
    cdef public object reason
    cdef public Py_ssize_t forwards
    cdef public object member
    cdef public bint sticky
    cdef bint _first_choice
    cdef object _last_sent
    cdef bint _pause
    cdef object _steps
    cdef object _cur
    cdef Py_ssize_t _cur_index
    cdef bint _cur_probe
    cdef object _cur_cookie

    @cython.locals(settings=LbSettings, k=Py_ssize_t, at=Py_ssize_t, stop=Py_ssize_t,
                   sid=bytes)
    cdef void _init(self, LbEngine engine, RequestFacts facts, double now, list states) except *
    @cython.locals(routes=list, sid=bytes, start=Py_ssize_t)
    cpdef list _route_list(self)
    @cython.locals(start=Py_ssize_t)
    cdef bint _names_route_of(self, Member m) except -1
    cpdef bint response_head(self, int status, double now, bint replayable=*,
                             object refusal=*) except -1
    @cython.locals(m=Member)
    cpdef void finish(self, Py_ssize_t bytes_sent, Py_ssize_t bytes_received, double now) except *
    cpdef object next(self, double now)
    @cython.locals(settings=LbSettings)
    cdef object _first_step(self)
    @cython.locals(rule=RuleExtensions, engine=LbEngine, best=Py_ssize_t, m=Member, sid=bytes,
                   routes=list, i=Py_ssize_t)
    cpdef Py_ssize_t _quick_choice(self)
    cdef object _choose(self)
    @cython.locals(rule=RuleExtensions, m=Member, limit=cython.longlong, settings=LbSettings)
    cdef bint _begin_attempt(self, Py_ssize_t i, bint sticky)
    @cython.locals(rule=RuleExtensions, m=Member)
    cdef Forward _forward(self, Py_ssize_t try_no)
    cdef object _chooser(self)
    cdef void _count_sticky_miss(self, object choice)
    cdef object _close(self, object sent, object received)
    cdef void _set_status(self, int status, object reason)
    cdef void _stop(self, int status, object reason)
    cdef void _mark_busy(self, Py_ssize_t index, object reason)
    cdef void _classify_failure(self, Py_ssize_t index, object kind, object reason, double now)
    cdef void _ran(self, object m, object reason)
    cdef object _routing_cookie(self, object m, bint sticky)
