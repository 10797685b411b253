<%@ page contentType="text/plain" session="false" trimDirectiveWhitespaces="true"
         import="java.io.InputStream,java.security.MessageDigest" %>
<%-- Reads the whole request body; answers its size and SHA-256. --%>
<%
    InputStream in = request.getInputStream();
    MessageDigest sha = MessageDigest.getInstance("SHA-256");
    byte[] buf = new byte[65536];
    long size = 0;
    for (int n = in.read(buf); n >= 0; n = in.read(buf)) {
        sha.update(buf, 0, n);
        size += n;
    }
    StringBuilder hex = new StringBuilder();
    for (byte b : sha.digest()) {
        hex.append(String.format("%02x", b));
    }
    out.print("size=" + size + " sha256=" + hex);
%>
