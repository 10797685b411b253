<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %>
<%-- What Tomcat learnt of the request from AJP, one key=value per line. --%>
<%
    out.println("node=" + System.getProperty("pyjk.node"));
    out.println("method=" + request.getMethod());
    out.println("uri=" + request.getRequestURI());
    out.println("query=" + request.getQueryString());
    out.println("protocol=" + request.getProtocol());
    out.println("remote_addr=" + request.getRemoteAddr());
    out.println("remote_port=" + request.getRemotePort());
    out.println("local_addr=" + request.getLocalAddr());
    out.println("server_name=" + request.getServerName());
    out.println("server_port=" + request.getServerPort());
    out.println("secure=" + request.isSecure());
    out.println("activation=" + request.getAttribute("JK_LB_ACTIVATION"));
    out.println("x_forwarded_for=" + request.getHeader("X-Forwarded-For"));
    out.println("request_id=" + request.getHeader("X-Pyjk-Request-Id"));
    out.println("x_custom=" + request.getHeader("X-Custom"));
%>
