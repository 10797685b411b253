# C types for balancer/lb/sticky.py (Cython's pure-Python mode; see setup.py): the plan calls
# session_id and session_routes for every request, as C calls (plan.pxd cimports them).

cpdef object session_id(object facts, object settings)
cpdef object path_parameter(str uri, str name)
cpdef list session_routes(str session)
