# The C layout of ClientConnection in the compiled build (setup.py; Cython reads it beside the
# .py): typed references to the exchange in flight and the request being parsed, C fields for
# the parse and flow-control state. No asyncio.Protocol base: uvloop needs only the methods.
cimport cython
from balancer.dataplane.admission cimport Admission
from balancer.dataplane.exchange cimport Exchange
from balancer.dataplane.proxy_core cimport ProxyCore
from balancer.dataplane.request cimport Request
# read_head a C call: the module cimported (request_head.pxd cimports this one; a cimport of
# the function by name would need request_head.pxd whole while it is being read)
from balancer.dataplane cimport request_head as rh
from balancer.dataplane.timer_wheel cimport TimerWheel

cdef class ClientConnection

cdef class ParserSlot:
    cdef public ClientConnection conn
    cdef public object parser

cdef class ClientConnection:
    cdef public ProxyCore server
    cdef public object limits, loop, tls, transport, parser, tunnel
    cdef public list queue
    cdef public ParserSlot slot
    cdef public object chunk_lines, reseed, upgrade_rest, valid_host, head_part
    cdef public object forwarded_host
    cdef public Admission admission
    cdef public TimerWheel wheel
    cdef public Exchange exchange
    cdef public Request req
    cdef public str peer_ip
    cdef public bytes forwarded_fields, rbuf
    cdef public bint secure, trusted, overflow, stop_after, parse_dead, starting, closed
    cdef public bint lingering, eof, fresh
    cdef public Py_ssize_t head_size, head_raw, n_headers, rpos, head_at, head_end, chunk_end
    cdef public int reject_status, pause_flags
    cdef public long long timer_slot
    cdef public double timer_at, conn_at, head_started, body_read_at, idle_since
    cdef public double write_paused_at, held_at
    cdef public Py_ssize_t max_head_size, max_headers, max_pipelined, max_body_size
    cdef public Py_ssize_t replay_buffer_size
    cdef public double header_timeout, body_timeout, keepalive_timeout

    @cython.locals(p="const unsigned char *", i=Py_ssize_t, n=Py_ssize_t, req=Request)
    cpdef void on_message_begin(self) except *
    cpdef void on_headers_complete(self) except *
    cpdef void on_body(self, object body) except *
    cpdef void on_message_complete(self) except *
    cpdef void _pause(self, int why) except *
    cdef void _resume(self, int why) except *
    cpdef void resume_body(self) except *
    cpdef void pending_taken(self) except *
    @cython.locals(ex=Exchange, queue=list)
    cpdef void start_next(self) except *
    cpdef void exchange_done(self, bint keep_alive, double now=*) except *
    cdef void _arm(self, double when) except *
    cpdef void close(self, bint linger=*) except *
    cdef void _close_transport(self, object transport) except *
    cdef void _ensure_deadline(self, double when) except *
    @cython.locals(req=Request, now=double)
    cdef void _lift_hold(self) except *
