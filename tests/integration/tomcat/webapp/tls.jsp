<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %>
<%-- What Tomcat learnt of the client's TLS connection from AJP (mod_ssl's facts via mod_jk). --%>
<%
    out.println("secure=" + request.isSecure());
    out.println("scheme=" + request.getScheme());
    out.println("cipher=" + request.getAttribute("jakarta.servlet.request.cipher_suite"));
    out.println("key_size=" + request.getAttribute("jakarta.servlet.request.key_size"));
    out.println("session=" + request.getAttribute("jakarta.servlet.request.ssl_session_id"));
    out.println("protocol=" + request.getAttribute("org.apache.tomcat.util.net.secure_protocol_version"));
    Object certs = request.getAttribute("jakarta.servlet.request.X509Certificate");
    String subject = "none";
    if (certs instanceof java.security.cert.X509Certificate[]) {
        java.security.cert.X509Certificate[] chain = (java.security.cert.X509Certificate[]) certs;
        if (chain.length > 0) subject = chain[0].getSubjectX500Principal().getName();
    }
    out.println("client_cert=" + subject);
%>
