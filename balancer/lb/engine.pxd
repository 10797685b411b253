# C types for balancer/lb/engine.py (Cython's pure-Python mode; see setup.py).
cimport cython
from balancer.lb.member cimport Member
from balancer.lb.plan cimport RequestPlan
from balancer.lb.settings cimport LbSettings
from balancer.lb cimport sticky as st

cdef Py_ssize_t _ROUTE_SCAN

cdef class LbEngine:
    cdef public object config
    cdef public object name
    cdef public object lb_state
    cdef public object settings
    cdef public tuple members
    cdef public object maintain_interval
    cdef public Py_ssize_t next_offset
    cdef public Py_ssize_t _busy
    cdef public bint _busy_of_members
    cdef public object max_busy
    cdef public object last_maintain_time
    cdef public object last_reset
    cdef public object pool_has_room
    cdef public list _changes
    cdef public dict _routes

    @cython.locals(total=cython.longlong, m=Member)
    cdef long long _busy_now(self) except? -1
    @cython.locals(i=Py_ssize_t, members=tuple, k=Py_ssize_t, m=Member)
    cpdef Py_ssize_t route_index(self, str route) except -2
    @cython.locals(members=tuple, i=Py_ssize_t, m=Member)
    cdef Py_ssize_t route_at(self, bytes data, Py_ssize_t at, Py_ssize_t stop) except -2
    @cython.locals(m=Member, plan=RequestPlan)
    cpdef object plan(self, object facts, double now)
    @cython.locals(limit=cython.longlong)
    cdef bint _has_room(self, Member member) except -1
    cpdef void set_state(self, object member, object new, object reason, double now) except *
    @cython.locals(new_session=bint, settings=LbSettings)
    cpdef void count_choice(self, Member member, bint has_session, bint stateless, object now=*) except *
    cpdef void open_forward(self, Member member) except *
    @cython.locals(settings=LbSettings, mult=cython.longlong)
    cpdef void close_forward(self, Member member, object sent, object received, object now=*) except *
    cpdef void open_busyness(self, Member member) except *
