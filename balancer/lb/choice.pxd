# C types for balancer/lb/choice.py (Cython's pure-Python mode; see setup.py). best_by_value is
# the choice of every request without a session: a C call from the plan (plan.pxd cimports
# it), with C locals and the states it compares as C variables.
cimport cython
from balancer.config.rules cimport RuleExtensions
from balancer.lb.member cimport Member

cdef object _ACTIVE, _OK_IDLE, _OK, _ERR_REC, _ERR_FRC

cpdef bint takes_requests(object state)

@cython.locals(best=Py_ssize_t)
cpdef Py_ssize_t best_by_value(
    object members, list states, RuleExtensions rule, bint stateless, object rotation
) except -2

@cython.locals(
    n=Py_ssize_t, j=Py_ssize_t, i=Py_ssize_t, best_i=Py_ssize_t,
    by_value=bint, distance=cython.longlong, best_distance=cython.longlong,
    value=cython.longlong, best_value=cython.longlong, member=Member,
)
cpdef Py_ssize_t best_from(
    object members, list states, RuleExtensions rule, bint stateless, Py_ssize_t offset
) except -2
