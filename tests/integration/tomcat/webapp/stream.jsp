<%@ page contentType="application/octet-stream" session="false" trimDirectiveWhitespaces="true" %>
<%-- ?size=N bytes of the pattern 0-9a-zA-Z_- repeated, in ?parts=K flushed parts with
     ?delay=ms between them; ?length=1 announces a Content-Length first. --%>
<%
    long size = Long.parseLong(request.getParameter("size"));
    int parts = Integer.parseInt(request.getParameter("parts") == null ? "1" : request.getParameter("parts"));
    long delay = Long.parseLong(request.getParameter("delay") == null ? "0" : request.getParameter("delay"));
    if ("1".equals(request.getParameter("length"))) {
        response.setContentLengthLong(size);
    }
    String alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-";
    StringBuilder sb = new StringBuilder();
    while (sb.length() < 8192) {
        sb.append(alphabet);
    }
    char[] block = sb.toString().toCharArray();
    long per = size / parts;
    long written = 0;
    for (int p = 0; p < parts; p++) {
        long end = p == parts - 1 ? size : written + per;
        while (written < end) {
            int off = (int) (written % 64);
            int n = (int) Math.min(block.length - off, end - written);
            out.write(block, off, n);
            written += n;
        }
        out.flush();
        if (delay > 0 && p < parts - 1) {
            Thread.sleep(delay);
        }
    }
%>
