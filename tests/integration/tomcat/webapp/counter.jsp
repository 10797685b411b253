<%@ page contentType="text/plain; charset=UTF-8" session="true" trimDirectiveWhitespaces="true" %>
<%-- A session counter: which node served, the session id, how often this session was seen. --%>
<%
    Integer count = (Integer) session.getAttribute("count");
    count = count == null ? 1 : count + 1;
    session.setAttribute("count", count);
    out.print("node=" + System.getProperty("pyjk.node") + " session=" + session.getId()
            + " count=" + count);
%>
