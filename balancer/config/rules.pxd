# C types for balancer/config/rules.py (Cython's pure-Python mode; see setup.py). The lb
# engine (sticky.pxd, choice.pxd, plan.pxd) and RequestFacts (decisions.pxd) hold a rule typed
# as this extension type: a field read is a C load.
cdef class RuleExtensions:
    cdef readonly object reply_timeout
    cdef readonly bint sticky_ignore
    cdef readonly bint stateless
    cdef readonly object activation
    cdef readonly object fail_on_status
    cdef readonly object use_server_errors
    cdef readonly object session_cookie
    cdef readonly object session_path
    cdef readonly object set_session_cookie
    cdef readonly object session_cookie_path

