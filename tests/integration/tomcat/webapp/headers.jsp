<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %>
<%-- Header values outside ASCII: Tomcat writes them to AJP as ISO-8859-1 bytes. --%>
<%
    response.setHeader("X-Latin", "caf\u00e9 na\u00efve");
    response.setHeader("X-Plain", "plain");
    response.addHeader("X-Twice", "one");
    response.addHeader("X-Twice", "two");
    out.print("ok");
%>
