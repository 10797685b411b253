"""Fixtures for the interop tests against real Tomcat 10: server.xml templates, a tiny webapp
(JSP pages), and ``kit.py``, which starts and stops instances."""
