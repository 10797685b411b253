# The C layout of Exchange in the compiled build (setup.py; Cython reads it beside the .py):
# typed references to the client connection and the request, so the common path reads their
# fields and calls the connection at C level; the steps of the plan loop are C calls.
cimport cython
# time.monotonic() a C call (the .py imports Python's time: the same clock)
from cpython cimport time
from balancer.dataplane cimport head_bytes as hb
from balancer.dataplane.answers cimport RouteAnswers
from balancer.dataplane.downstream cimport ClientConnection
from balancer.dataplane.member_connection cimport MemberSocket
from balancer.dataplane.pool cimport MemberPool
from balancer.dataplane.proxy_core cimport ProxyCore
from balancer.dataplane.relay cimport body_mode, final_head, interim_head, switch_head
from balancer.dataplane.request cimport Request
from balancer.dataplane.stats cimport TrafficStats
from balancer.dataplane.routes cimport ProxyTo
from balancer.lb.decisions cimport Forward, new_facts
from balancer.lb.engine cimport LbEngine
from balancer.lb.plan cimport RequestPlan

cdef Py_ssize_t _JOIN_MAX

cdef class Exchange:
    cdef public ClientConnection client
    cdef public Request req
    cdef public ProxyCore server
    cdef public object plan, pool_timer, wait_timer, handler
    cdef public ProxyTo route
    cdef public Forward fwd
    cdef public MemberPool pool
    cdef public MemberSocket up
    cdef public object set_cookie
    cdef public list body, wbuf
    cdef public bytes request_id
    cdef public str member, failed
    cdef public bint reused, stale_retried, done, replayable, body_complete, body_done_up
    cdef public bint request_sent, resp_started, client_ka, wbuf_big
    cdef public Py_ssize_t body_size, received, sent, resp_bytes, local_limit, head_parts
    cdef public int mode, status
    cdef public double started, attached_at, first_byte_at, ended_at

    cdef void setup(self, ClientConnection client, Request req) except *
    @cython.locals(answers=RouteAnswers)
    cpdef void start(self) except *
    @cython.locals(lb=LbEngine, names=dict)
    cdef void _proxy(self, ProxyTo route) except *
    @cython.locals(lb_plan=RequestPlan)
    cpdef void _advance(self, double now=*) except *
    @cython.locals(pools=dict, conn=MemberSocket, pool=MemberPool, hit=tuple)
    cdef void _forward(self, Forward fwd, double now) except *
    cdef void _attach(self, MemberSocket conn, bint reused, double now=*) except *
    cdef void _report(self, object kind, str reason) except *
    @cython.locals(lb_plan=RequestPlan)
    cdef void _finish_forward(self, Py_ssize_t received, double now) except *
    cdef void _report_received(self, object kind, str reason, Py_ssize_t received) except *
    cdef void _drop_up(self) except *
    @cython.locals(lb_plan=RequestPlan)
    cpdef void upstream_head(self) except *
    @cython.locals(n=Py_ssize_t)
    cpdef void upstream_body(self, object data) except *
    @cython.locals(buf=list, head=Py_ssize_t)
    cpdef void flush(self) except *
    cpdef void upstream_complete(self, bint reusable) except *
    cpdef void end(self, bint keep_alive, double loop_now=*) except *
    cpdef void _fail(self, int status) except *
    @cython.locals(stats=TrafficStats, started=double, ended=double, total=double, first=double)
    cdef void _observe(self) except *
