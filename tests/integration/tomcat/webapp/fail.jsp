<%@ page contentType="text/plain" session="false" trimDirectiveWhitespaces="true" %>
<%-- An application error: Tomcat answers 500. --%>
<%
    if (request.getParameter("status") != null) {
        response.sendError(Integer.parseInt(request.getParameter("status")), "asked for");
        return;
    }
    throw new IllegalStateException("fail.jsp fails on purpose");
%>
