# C types for balancer/lb/sticky.py (Cython's pure-Python mode; see setup.py): the plan calls
# session_id and session_routes for every request, as C calls (plan.pxd cimports them); the
# cookie scan runs over the characters in C.
cimport cython
from balancer.config.rules cimport RuleExtensions
from balancer.lb.decisions cimport RequestFacts

@cython.locals(rule=RuleExtensions)
cpdef object session_id(RequestFacts facts, object settings)
cpdef object path_parameter(str uri, str name)
cpdef object cookie_value(object headers, str name)

@cython.locals(size=Py_ssize_t, end=Py_ssize_t, start=Py_ssize_t, at=Py_ssize_t, stop=Py_ssize_t)
cdef list _cookie_values(str header, str name)

cpdef list session_routes(str session)
